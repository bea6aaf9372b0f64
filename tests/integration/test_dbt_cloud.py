"""dbt Cloud as the place dbt runs, recovered exactly like local dbt Core.

The real dbt Cloud API cannot be reached from here, so each test starts a local fake of it
on 127.0.0.1 (``tests/dbt_cloud_fake.py``) that runs real dbt on a copy of the project against
the test's DuckDB file, so every ``run_results.json`` is genuine. Everything else is real:
the Dagster instance (SQLite), the artifact store, the sensor, the re-executions. What a
recovery rebuilt is asserted on its own stored run_results, against the manifest's
downstream computed here (``tests/dbt_graph.py``), never by the code under test.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration.artifacts.store import open_store, read_run_index
from orchestration.settings import REPO_ROOT
from tests.conftest import Pipeline, plan_json, reset_caches, statuses, stored_run_results
from tests.dbt_cloud_fake import CANCELLED, FakeDbtCloud
from tests.dbt_graph import all_models, model_descendants

pytestmark = pytest.mark.integration

MIDDLE = "int_deals__converted"
RESUME_RETRY_TAG = "dagster/is_resume_retry"


@dataclass
class Cloud:
    fake: FakeDbtCloud
    pipeline: Pipeline
    project: Path


def clear_cloud_caches() -> None:
    from orchestration.dbt_cloud.workspace import _workspace

    _workspace.cache_clear()
    reset_caches()


@pytest.fixture
def cloud(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """The fake dbt Cloud, the project copy it runs, and DBT_CLOUD_* pointing at it."""
    project = pipeline.root / "cloud_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs")
    )
    token = f"dbtc_secret-{uuid.uuid4().hex}"
    fake = FakeDbtCloud(
        project_dir=project,
        workdir=pipeline.root / "cloud_runs",
        duckdb_path=pipeline.duckdb_path,
        token=token,
    ).start()
    monkeypatch.setenv("DBT_CLOUD_ACCOUNT_ID", str(fake.account_id))
    monkeypatch.setenv("DBT_CLOUD_TOKEN", token)
    monkeypatch.setenv("DBT_CLOUD_URL", fake.url)
    monkeypatch.setenv("DBT_CLOUD_PROJECT_ID", str(fake.project_id))
    monkeypatch.setenv("DBT_CLOUD_ENVIRONMENT_ID", str(fake.environment_id))
    # Dagster keeps the last code load's context (with the dbt Cloud state fetched then) in
    # a process-wide singleton; a run worker reuses it. Each test has its own fake dbt Cloud,
    # so none may see an earlier test's state.
    from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext

    monkeypatch.setattr(DefinitionsLoadContext, "_instance", None)
    clear_cloud_caches()
    try:
        yield Cloud(fake, pipeline, project)
    finally:
        fake.stop()
        clear_cloud_caches()


def executed_models(pipeline: Pipeline, run_id: str) -> set[str]:
    """Models dbt really ran in ``run_id``, from its stored run_results."""
    results = stored_run_results(open_store(pipeline.artifacts_uri), run_id)
    return {name for r in results for name, status in statuses(r).items() if status != "skipped"}


def assert_token_nowhere(cloud: Cloud) -> None:
    """The token reached the fake's Authorization headers — and nothing Dagster or the
    artifact store keeps: run config, tags, event log, logs, snapshots, artifacts."""
    token = cloud.fake.token
    assert cloud.fake.requests and all(
        r.authorization == f"Token {token}" for r in cloud.fake.requests
    )
    with cloud.pipeline.instance() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            assert token not in json.dumps(run.run_config, default=str)
            assert token not in json.dumps(dict(run.tags))
            assert not any(token in (e.message or "") for e in instance.all_logs(run.run_id))
    for folder in (cloud.pipeline.dagster_home, Path(cloud.pipeline.artifacts_uri)):
        for path in folder.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


def test_a_failed_cloud_job_is_stored_explained_and_retried_by_the_sensor(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_retry_sensor import SensorDriver, execute_retry, selected

    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
    pipeline = cloud.pipeline
    pipeline.faults().inject(MIDDLE, times=1)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    needed = {MIDDLE} | model_descendants(MIDDLE)

    # The dbt Cloud run's artifacts are stored under the Dagster run id, like a local run's.
    store = open_store(pipeline.artifacts_uri)
    [record] = read_run_index(store, failed.run_id).invocations
    assert {"run_results.json", "manifest.json", "dbt_cloud_run.json"} <= set(record.files)
    [results] = stored_run_results(store, failed.run_id)
    assert statuses(results)[MIDDLE] == "error"
    assert {m for m, s in statuses(results).items() if s == "skipped"} == needed - {MIDDLE}

    plan = plan_json(failed.run_id)
    reasons = {a["key"]: a["reason"] for a in plan["assets"]}
    assert set(reasons) == needed | {"revenue_report"}
    assert reasons[MIDDLE] == "errored"

    driver = SensorDriver(pipeline)
    [request] = driver.tick().run_requests
    assert selected(request) == needed | {"revenue_report"}
    retry = execute_retry(pipeline, request)
    assert retry.success
    assert executed_models(pipeline, retry.run_id) == needed
    assert driver.tick().run_requests == []
    assert_token_nowhere(cloud)
    # One `dbt parse` on dbt Cloud for the code location; runs and the sensor reuse it.
    assert [run.steps for run in cloud.fake.runs.values()].count(["dbt parse"]) == 1


def reexecute_from_asset_failure(pipeline: Pipeline, parent_run_id: str) -> object:
    """*From asset failure* as the README gives it from Python: Dagster's own key set."""
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=("daily_pipeline",)
    )
    with pipeline.instance() as instance:
        run = instance.get_run_by_id(parent_run_id)
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        keys, _ = instance.run_domain.get_keys_to_reexecute(parent_run_id, snapshot)
        return execute_job(
            job,
            instance=instance,
            asset_selection=list(keys),
            tags={
                "dagster/parent_run_id": parent_run_id,
                "dagster/root_run_id": parent_run_id,
                "dagster/is_asset_resume_retry": "true",
            },
            raise_on_error=False,
        )


GATE_TABLE = "main.cloud_gate"
RERUN = ("POST", "/api/v2/accounts/{id}/jobs/{id}/rerun/")


def test_ui_from_failure_and_from_asset_failure_rerun_only_the_failed_nodes(
    cloud: Cloud,
) -> None:
    """A model fails on something outside the code and the flags (a table its pre-hook reads
    is missing). Once it exists, *From failure* restarts the dbt Cloud run from its point of
    failure (dbt retry runs exactly the plan there); *From asset failure* of the same failed
    run cannot (a rerun restarts only the job's latest run, now the first recovery), so it
    triggers a run of exactly the planned nodes. Both re-run only the failed nodes."""
    model = cloud.project / "models" / "intermediate" / f"{MIDDLE}.sql"
    model.write_text(
        f"{{{{ config(pre_hook='select * from {GATE_TABLE}') }}}}\n" + model.read_text()
    )
    pipeline = cloud.pipeline
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    needed = {MIDDLE} | model_descendants(MIDDLE)
    reasons = {a["key"]: a["reason"] for a in plan_json(failed.run_id)["assets"]}
    assert reasons == {MIDDLE: "errored"} | {
        key: "upstream_failed" for key in (needed - {MIDDLE}) | {"revenue_report"}
    }

    import duckdb

    with duckdb.connect(str(pipeline.duckdb_path)) as connection:
        connection.execute(f"create table {GATE_TABLE} as select 1 as open")
    from_failure = pipeline.reexecute(failed.run_id)
    assert from_failure.success
    assert RERUN in cloud.fake.endpoints()
    store = open_store(pipeline.artifacts_uri)
    [record] = read_run_index(store, from_failure.run_id).invocations
    assert record.command == "retry"
    assert cloud.fake.runs[max(cloud.fake.runs)].steps == ["dbt retry"]
    assert executed_models(pipeline, from_failure.run_id) == needed

    reruns = [r for r in cloud.fake.requests if r.path.endswith("/rerun/")]
    from_asset_failure = reexecute_from_asset_failure(pipeline, failed.run_id)
    assert from_asset_failure.success
    assert [r for r in cloud.fake.requests if r.path.endswith("/rerun/")] == reruns
    assert cloud.fake.runs[max(cloud.fake.runs)].steps[0].startswith("dbt build --select")
    assert executed_models(pipeline, from_asset_failure.run_id) == needed


def test_a_timed_out_or_cancelled_cloud_run_is_recovered_like_a_killed_run(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No dbt runs here: the fake holds every run. One is still running at the timeout (we
    cancel it on dbt Cloud), one is cancelled in dbt Cloud; neither leaves run_results.json,
    so nothing without a materialization counts as done, as after a killed local dbt."""
    from orchestration.definitions import build_definitions

    defs = build_definitions()  # the code load runs `dbt parse` on dbt Cloud: not held
    kinds = {kind for spec in defs.resolve_all_asset_specs() for kind in spec.kinds}
    assert "dbtcloud" in kinds
    monkeypatch.setenv("DBT_CLOUD_RUN_TIMEOUT_SECONDS", "2")
    cloud.fake.hold_runs = True
    pipeline = cloud.pipeline
    timed_out = pipeline.run_job("daily_pipeline")
    cloud.fake.cancel_held_runs = True
    cancelled = pipeline.run_job("daily_pipeline")
    assert not timed_out.success and not cancelled.success

    builds = [r for r in cloud.fake.runs.values() if r.steps[0].startswith("dbt build")]
    assert [r.status for r in builds] == [CANCELLED, CANCELLED]
    cancels = [r.path for r in cloud.fake.requests if "/cancel" in r.path]
    assert cancels == [f"/api/v2/accounts/{cloud.fake.account_id}/runs/{builds[0].id}/cancel"]
    store = open_store(pipeline.artifacts_uri)
    for run in (timed_out, cancelled):
        [record] = read_run_index(store, run.run_id).invocations
        assert "run_results.json" not in record.files and "dbt_cloud_run.json" in record.files
        plan = plan_json(run.run_id)
        assert {a["key"] for a in plan["assets"]} == all_models() | {"revenue_report"}
    [failure] = timed_out.get_step_failure_events()
    assert "timed out after 2 s" in failure.event_specific_data.error.message


def test_with_dbt_cloud_unset_nothing_of_it_is_defined(pipeline: Pipeline) -> None:
    """Regression guard for the default: no DBT_CLOUD_* → the local dbt op, no dbt Cloud
    asset, no dbt Cloud metadata (the set case is asserted where the fake runs)."""
    from orchestration.definitions import build_definitions

    reset_caches()
    specs = build_definitions().resolve_all_asset_specs()
    assert not any("dbtcloud" in spec.kinds for spec in specs)
    assert any("dbt" in spec.kinds for spec in specs)
    assert not any(
        str(key).startswith("dagster-dbt/cloud") for spec in specs for key in spec.metadata
    )
