"""A failed ``weekly_full_refresh`` is recovered WITH ``--full-refresh``, on every path.

``fct_fx_rate_snapshots`` is append-only (one row per currency per build), so its row count
tells a full refresh (the history starts over: one build's rows) from an incremental run (one
more build's rows on top). A daily run builds it once; the weekly full refresh then fails on it
(an injected transient fault, spent in that run), and each recovery must leave exactly one
build's rows. The daily (incremental) counterpart is asserted on every path in
``test_microbatch_recovery.py``. One shared failed run; the sensor is evaluated first because
it works from the latest asset state, which the other paths repair.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import ReexecutionOptions, execute_job
from dagster._core.definitions.reconstruct import build_reconstructable_job

from orchestration.artifacts.store import open_store
from orchestration.cli.main import main as cli_main
from tests.conftest import Pipeline, make_pipeline, plan_json, reset_caches, stored_run_results
from tests.integration.test_retry_sensor import SensorDriver, execute_retry

pytestmark = pytest.mark.integration

APPEND_ONLY = "fct_fx_rate_snapshots"
WEEKLY = "weekly_full_refresh"


def rows(pipeline: Pipeline) -> int:
    return pipeline.query(f"select count(*) from main.{APPEND_ONLY}")[0][0]


def rows_per_build(pipeline: Pipeline) -> int:
    return pipeline.query("select count(distinct quote_currency) from raw_fx.exchange_rates")[0][0]


def ran_with_full_refresh(pipeline: Pipeline, run_id: str) -> list[bool]:
    """``args.full_refresh`` of every dbt invocation of ``run_id`` that built the model."""
    return [
        bool(document["args"].get("full_refresh"))
        for document in stored_run_results(open_store(pipeline.artifacts_uri), run_id)
        if any(r["unique_id"].endswith(f".{APPEND_ONLY}") for r in document["results"])
    ]


@pytest.fixture(scope="module")
def failed_weekly(
    tmp_path_factory: pytest.TempPathFactory, manifest_ready: Path
) -> Iterator[tuple[Pipeline, str]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        pipeline = make_pipeline(tmp_path_factory.mktemp("full_refresh"), monkeypatch)
        monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
        reset_caches()
        assert pipeline.run_job("daily_pipeline").success
        assert rows(pipeline) == rows_per_build(pipeline)
        pipeline.faults().inject(APPEND_ONLY, times=1)
        failed = pipeline.run_job(WEEKLY)
        assert not failed.success
        assert rows(pipeline) == rows_per_build(pipeline)  # the model errored before writing
        yield pipeline, failed.run_id
        reset_caches()


def test_plan_says_the_retry_will_full_refresh(
    failed_weekly: tuple[Pipeline, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = failed_weekly
    assert plan_json(run_id)["full_refresh"] is True
    assert cli_main(["plan", "--run-id", run_id]) == 0
    assert "Full refresh: yes" in capsys.readouterr().out


def test_sensor_retry_of_a_failed_full_refresh_full_refreshes(
    failed_weekly: tuple[Pipeline, str],
) -> None:
    pipeline, _ = failed_weekly
    tick = SensorDriver(pipeline).tick()
    assert len(tick.run_requests) == 1, tick.skip_message
    retry = execute_retry(pipeline, tick.run_requests[0])
    assert retry.success
    assert ran_with_full_refresh(pipeline, retry.run_id) == [True]
    assert rows(pipeline) == rows_per_build(pipeline)


@pytest.mark.parametrize("path", ["recover_from_artifacts", "from_failure"])
def test_every_path_recovers_a_failed_full_refresh_with_full_refresh(
    failed_weekly: tuple[Pipeline, str], path: str
) -> None:
    pipeline, run_id = failed_weekly
    if path == "recover_from_artifacts":
        config = {"ops": {"dbt_models": {"config": {"retry_from_run_id": run_id}}}}
        recovery = pipeline.run_job("recover_from_artifacts", run_config=config)
    else:
        recovery = reexecute_weekly(pipeline, run_id)
    assert recovery.success
    assert ran_with_full_refresh(pipeline, recovery.run_id) == [True]
    assert rows(pipeline) == rows_per_build(pipeline)  # started over, not appended


def reexecute_weekly(pipeline: Pipeline, run_id: str) -> Any:
    """UI *From failure* of the weekly job (tagged ``dagster/is_resume_retry``)."""
    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=(WEEKLY,)
    )
    with pipeline.instance() as instance:
        return execute_job(
            job,
            instance=instance,
            reexecution_options=ReexecutionOptions.from_failure(run_id, instance),
            tags={"dagster/is_resume_retry": "true"},
            raise_on_error=False,
        )
