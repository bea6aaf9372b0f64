"""Batch-level recovery of a dbt microbatch model, on every recovery path, with real dbt.

One failed ``daily_pipeline`` is shared by every path (each full run of the 120-day window costs
~30 s): ``fct_fx_rates_by_day`` has 120 daily batches; two non-contiguous days fail with a
genuine DuckDB error (one of them twice), so the model ends ``partial success`` and its
downstream is skipped. Each path is then asserted on its recovery run's own stored
run_results.json: the model's ``batch_results.successful`` holds exactly the failed batches,
its downstream ran, and afterwards the table holds the right rows for every day.

The same run also fails the append-only ``fct_fx_rate_snapshots`` (one row per currency per
build): a daily run is incremental, so each recovery appends one build's rows instead of
starting the history over with ``--full-refresh`` (the weekly job's case is in
``test_full_refresh_recovery.py``).

The sensor is evaluated first (it works from the latest asset state, which the other paths
repair); its retry hits the twice-failing day again, and a *From failure* of that retry
continues the chain with the one batch still failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType, execute_job
from dagster._core.definitions.reconstruct import build_reconstructable_job

from orchestration.artifacts.store import open_store
from tests.conftest import Pipeline, make_pipeline, plan_json, reset_caches, stored_run_results
from tests.dbt_graph import model_descendants
from tests.integration.test_retry_sensor import SensorDriver, execute_retry, selected

pytestmark = pytest.mark.integration

MODEL = "fct_fx_rates_by_day"
MODEL_ID = f"model.crm_revenue.{MODEL}"
WINDOW_DAYS = 120
TODAY = datetime.now(UTC).date()
ONCE = (TODAY - timedelta(days=90)).isoformat()  # fails in the scheduled run only
TWICE = (TODAY - timedelta(days=30)).isoformat()  # fails in the run and in the first retry
APPEND_ONLY = "fct_fx_rate_snapshots"
ROWS_PER_BUILD_SQL = "select count(distinct quote_currency) from raw_fx.exchange_rates"
ROWS_PER_DAY_SQL = f"""
    select cast(rate_date as varchar), count(*) from main.{MODEL} group by 1
    except
    select cast(rate_date as varchar), count(*) from main.stg_fx__exchange_rates
    where base_currency = 'EUR' group by 1
"""


def batch(day: str) -> list[str]:
    """A daily batch as dbt writes it in run_results.json (UTC, end exclusive)."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return [start.isoformat(), (start + timedelta(days=1)).isoformat()]


def model_result(pipeline: Pipeline, run_id: str) -> dict[str, Any]:
    """The microbatch model's entry over every dbt invocation of ``run_id`` (batches summed)."""
    entries = [
        result
        for document in stored_run_results(open_store(pipeline.artifacts_uri), run_id)
        for result in document["results"]
        if result["unique_id"] == MODEL_ID
    ]
    assert entries, f"run {run_id} did not run {MODEL}"
    succeeded = [b for e in entries for b in e["batch_results"]["successful"]]
    failed = [b for e in entries for b in e["batch_results"]["failed"]]
    return {"status": entries[-1]["status"], "successful": succeeded, "failed": failed}


def ran(pipeline: Pipeline, run_id: str) -> set[str]:
    """Models dbt executed (any status but skipped) in ``run_id``."""
    return {
        result["unique_id"].split(".")[-1]
        for document in stored_run_results(open_store(pipeline.artifacts_uri), run_id)
        for result in document["results"]
        if result["unique_id"].startswith("model.") and result["status"] != "skipped"
    }


def snapshot_rows(pipeline: Pipeline) -> int:
    """Rows of the append-only model; 0 while it has never been built."""
    tables = pipeline.query(
        f"select count(*) from information_schema.tables where table_name = '{APPEND_ONLY}'"
    )
    if tables != [(1,)]:
        return 0
    return pipeline.query(f"select count(*) from main.{APPEND_ONLY}")[0][0]


def rebuilt_batches(pipeline: Pipeline, run_id: str) -> Any:
    with pipeline.instance() as instance:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.dagster_event.step_materialization_data.materialization
            if materialization.asset_key == AssetKey(MODEL):
                value = materialization.metadata.get("orchestration/rebuilt_batches")
                return None if value is None else value.value
    return None


@dataclass
class FailedRun:
    pipeline: Pipeline
    run_id: str


@pytest.fixture(scope="module")
def failed_run(
    tmp_path_factory: pytest.TempPathFactory, manifest_ready: Path
) -> Iterator[FailedRun]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        pipeline = make_pipeline(tmp_path_factory.mktemp("microbatch"), monkeypatch)
        monkeypatch.setenv("ORCHESTRATION_MICROBATCH_DAYS", str(WINDOW_DAYS))
        monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
        reset_caches()
        faults = pipeline.faults()
        faults.inject(MODEL, batch=ONCE, times=1)
        faults.inject(MODEL, batch=TWICE, times=2)
        # An unclassified message: the sensor must find the transient batch errors itself.
        faults.inject(APPEND_ONLY, times=1, message=f"injected fault in {APPEND_ONLY}, no cause")
        failed = pipeline.run_job("daily_pipeline")
        assert not failed.success
        yield FailedRun(pipeline, failed.run_id)
        reset_caches()


def test_one_faulted_day_fails_only_its_batch_and_skips_the_downstream(
    failed_run: FailedRun,
) -> None:
    pipeline = failed_run.pipeline
    result = model_result(pipeline, failed_run.run_id)
    assert result["status"] == "partial success"
    assert sorted(result["failed"]) == [batch(ONCE), batch(TWICE)]
    assert len(result["successful"]) == WINDOW_DAYS - 2  # a 100-plus-batch model
    assert not ran(pipeline, failed_run.run_id) & model_descendants(MODEL)  # skipped
    assert [f.batch for f in pipeline.faults().list()] == [TWICE]  # ONCE spent, TWICE: 1 left
    assert snapshot_rows(pipeline) == 0  # it errored: no table yet


def test_plan_names_the_failed_windows_with_reason_batches_failed(failed_run: FailedRun) -> None:
    plan = plan_json(failed_run.run_id)
    by_key = {asset["key"]: asset for asset in plan["assets"]}
    assert by_key[MODEL]["reason"] == "batches_failed"
    windows = [[w["start"], w["end"]] for w in by_key[MODEL]["batches"]]
    assert windows == [batch(ONCE), batch(TWICE)]  # not contiguous: two windows
    assert "2 of 120 batches failed" in by_key[MODEL]["detail"]
    assert model_descendants(MODEL) <= by_key.keys()
    assert plan["full_refresh"] is False


def test_sensor_retry_reruns_only_the_failed_batches_and_a_chained_retry_the_rest(
    failed_run: FailedRun,
) -> None:
    pipeline = failed_run.pipeline
    tick = SensorDriver(pipeline).tick()
    assert len(tick.run_requests) == 1, tick.skip_message  # batch errors classified transient
    request = tick.run_requests[0]
    assert {MODEL, *model_descendants(MODEL)} <= selected(request)
    assert json.loads(request.tags["orchestration/plan_reasons"])["reasons"][MODEL] == (
        "batches_failed"
    )
    assert MODEL in request.tags["orchestration/plan_batches"]
    assert "orchestration/full_refresh" not in request.tags  # a daily run: incremental
    retry = execute_retry(pipeline, request)
    assert not retry.success  # TWICE fails a second time
    result = model_result(pipeline, retry.run_id)
    assert result["successful"] == [batch(ONCE)] and result["failed"] == [batch(TWICE)]
    assert not ran(pipeline, retry.run_id) & model_descendants(MODEL)

    # The chain: what is left is the one batch that failed in the latest run.
    plan = plan_json(retry.run_id)
    model = next(asset for asset in plan["assets"] if asset["key"] == MODEL)
    assert [[w["start"], w["end"]] for w in model["batches"]] == [batch(TWICE)]
    chained = pipeline.reexecute(retry.run_id)
    assert chained.success
    assert model_result(pipeline, chained.run_id)["successful"] == [batch(TWICE)]
    assert model_descendants(MODEL) <= ran(pipeline, chained.run_id)
    assert pipeline.query(ROWS_PER_DAY_SQL) == []


@pytest.mark.parametrize("path", ["recover_from_artifacts", "from_failure", "from_asset_failure"])
def test_every_path_reruns_exactly_the_failed_batches_plus_downstream(
    failed_run: FailedRun, path: str
) -> None:
    pipeline = failed_run.pipeline
    rows_before = snapshot_rows(pipeline)
    if path == "recover_from_artifacts":
        config = {"ops": {"dbt_models": {"config": {"retry_from_run_id": failed_run.run_id}}}}
        recovery = pipeline.run_job("recover_from_artifacts", run_config=config)
    elif path == "from_failure":
        recovery = pipeline.reexecute(failed_run.run_id)
    else:
        recovery = from_asset_failure(pipeline, failed_run.run_id)
    assert recovery.success
    result = model_result(pipeline, recovery.run_id)
    assert result["successful"] == [batch(ONCE), batch(TWICE)] and result["failed"] == []
    assert model_descendants(MODEL) <= ran(pipeline, recovery.run_id)
    assert rebuilt_batches(pipeline, recovery.run_id)["batches"] == 2
    assert pipeline.query(ROWS_PER_DAY_SQL) == []
    # Incremental, as the daily run was: one more build's rows, not a fresh history.
    per_build = pipeline.query(ROWS_PER_BUILD_SQL)[0][0]
    assert snapshot_rows(pipeline) == rows_before + per_build


def from_asset_failure(pipeline: Pipeline, run_id: str) -> Any:
    """*From asset failure* as the UI launches it: Dagster's key set, its tags."""
    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=("daily_pipeline",)
    )
    with pipeline.instance() as instance:
        run = instance.get_run_by_id(run_id)
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        keys, _ = instance.run_domain.get_keys_to_reexecute(run_id, snapshot)
        assert AssetKey(MODEL) in keys  # Dagster selects the whole model (every batch)
        return execute_job(
            job,
            instance=instance,
            asset_selection=list(keys),
            tags={
                "dagster/parent_run_id": run_id,
                "dagster/root_run_id": run.root_run_id or run_id,
                "dagster/is_asset_resume_retry": "true",
            },
            raise_on_error=False,
        )
