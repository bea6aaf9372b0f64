"""Production faults, each with the real parts: a run worker killed with SIGKILL in the middle of
``dbt build``, S3 down during a recovery that needs stored artifacts, a bad ``run_results.json``,
concurrent sensor evaluations, a burst of failed runs, and secrets that must never be stored.

(S3 down during the *upload* is ``test_pipeline.py::test_s3_down_during_upload_…``.)

The burst test fabricates its failed runs through Dagster's own API (``create_run_for_job`` +
``report_run_failed``, which is what run monitoring calls) instead of running dbt five times:
the sensor only reads run records and event logs, and five real runs would cost ~2 minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
)
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._daemon.sensor import fetch_existing_runs
from dagster._serdes import serialize_value

from orchestration.artifacts.store import open_store
from orchestration.settings import REPO_ROOT, load_settings
from orchestration.tags import ATTEMPT_TAG, RETRY_ROOT_TAG
from tests.conftest import (
    Pipeline,
    free_port,
    statuses,
    stored_run_results,
    use_postgres_warehouse,
)
from tests.dbt_graph import all_models, model_descendants
from tests.integration.test_retry_sensor import (
    SENSOR,
    SensorDriver,
    execute_retry,
    models_run,
    selected,
)
from tests.postgres import PostgresServer

pytestmark = pytest.mark.integration

MIDDLE_MODEL = "int_deals__converted"
WORKER_START_TIMEOUT_SECONDS = 240

ON_POSTGRES = pytest.mark.parametrize(
    "pipeline", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
"""Production storage only: several daemons or a burst of runs is a PostgreSQL deployment."""


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")


def run_logs(pipeline: Pipeline, run_id: str) -> str:
    with pipeline.instance() as instance:
        return "\n".join(e.message or "" for e in instance.all_logs(run_id))


def error_texts(pipeline: Pipeline, run_id: str) -> str:
    """Every failure message of the run with its causes (what the UI shows for a failure)."""
    texts: list[str] = []
    with pipeline.instance() as instance:
        for entry in instance.all_logs(
            run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
        ):
            texts.append(entry.message or "")
            error = getattr(entry.dagster_event.event_specific_data, "error", None)
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def events_of(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> list[Any]:
    return [entry.dagster_event for entry in instance.all_logs(run_id, of_type=event_type)]


def leftover_invocations(run_id: str) -> list[Path]:
    """dbt target folders a run left in the project (a killed worker never cleans up)."""
    folder = load_settings().dbt_project_dir / "target" / "invocations"
    return sorted(folder.glob(f"{run_id[:8]}-*")) if folder.is_dir() else []


def monitoring_failure_message(run_id: str, worker_pid: int) -> str:
    """The message run monitoring writes when a launcher reports a dead worker (the same
    f-string as ``dagster._daemon.monitoring.run_monitoring.monitor_started_run``)."""
    health = CheckRunHealthResult(
        WorkerStatus.FAILED, f"run worker process {worker_pid} was terminated by signal 9"
    )
    return f"Detected run worker status {health}. Marking run {run_id} as failed."


# --- (a) the run worker killed in the middle of dbt build ----------------------------------

WORKER_SCRIPT = textwrap.dedent(
    """
    from dagster import DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    if __name__ == "__main__":
        job = build_reconstructable_job(
            "orchestration.definitions", "job_by_name", reconstructable_args=("daily_pipeline",)
        )
        with DagsterInstance.get() as instance:
            execute_job(job, instance=instance, raise_on_error=False)
    """
)


@pytest.fixture
def worker(pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    """Starts ``daily_pipeline`` in its own process group (the run worker and its dbt child);
    whatever happens, the group is gone and the dbt folders it left are removed afterwards."""
    state: dict[str, Any] = {}
    log = pipeline.root / "worker.log"

    def start() -> subprocess.Popen:
        # One dbt thread: the build takes long enough to be caught half-way.
        env = {**os.environ, "DBT_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT],
            cwd=REPO_ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        state["process"] = process
        return process

    state["start"] = start
    state["log"] = log
    try:
        yield state
    finally:
        process = state.get("process")
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for folder in leftover_invocations(state.get("run_id", "nothing")):
            shutil.rmtree(folder, ignore_errors=True)


def test_a_worker_killed_mid_build_is_failed_by_monitoring_and_only_unfinished_assets_retried(
    pipeline: Pipeline, worker: dict[str, Any], no_backoff: None
) -> None:
    process = worker["start"]()
    deadline = time.monotonic() + WORKER_START_TIMEOUT_SECONDS
    models = all_models()
    with pipeline.instance() as instance:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the worker ended before it was killed:\n{worker['log'].read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no dbt model materialized in time:\n{worker['log'].read_text()}")
            runs = instance.get_runs(limit=1)
            if runs:
                worker["run_id"] = run_id = runs[0].run_id
                done = events_of(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION)
                if {event.asset_key.to_user_string() for event in done} & models:
                    break
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)  # the run worker and dbt with it, no cleanup
        process.wait(timeout=30)

        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == DagsterRunStatus.STARTED  # nobody said a word
        # Run monitoring, with a launcher that health-checks workers, does exactly this.
        instance.report_run_failed(run, monitoring_failure_message(run_id, process.pid))

        planned = {
            e.asset_key.to_user_string()
            for e in events_of(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        }
        materialized = {
            e.asset_key.to_user_string()
            for e in events_of(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION)
        }
        checks_planned = {
            e.event_specific_data.asset_check_key
            for e in events_of(instance, run_id, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED)
        }
        checks_done = {
            e.event_specific_data.asset_check_key
            for e in events_of(instance, run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
        }
    unfinished = planned - materialized
    assert unfinished & models, "dbt finished before the kill: the scenario is not exercised"
    assert materialized & models, "killed before any model: the scenario is not exercised"

    # A model that materialized but whose blocking tests never ran is not finished either.
    from orchestration.definitions import build_definitions

    asset_graph = build_definitions().resolve_asset_graph()
    untested = {
        key.asset_key.to_user_string()
        for key in checks_planned - checks_done
        if asset_graph.get_check_spec(key).blocking
    } & materialized
    expected = unfinished | untested

    tick = SensorDriver(pipeline).tick()
    assert len(tick.run_requests) == 1, tick.skip_message
    request = tick.run_requests[0]
    assert request.run_key == f"retry:{run_id}:1"  # classified transient: a worker died
    assert selected(request) == expected
    reasons = json.loads(request.tags["orchestration/plan_reasons"])["reasons"]
    assert set(reasons) == expected

    retry = execute_retry(pipeline, request)
    assert retry.success
    rebuilt = models_run(pipeline, retry.run_id)
    assert set(rebuilt) == expected & models  # never a model the killed run finished
    assert set(rebuilt.values()) == {"success"}
    assert SensorDriver(pipeline).tick().skip_message == "No failed assets: nothing to retry."


# --- (b) S3 unreachable during a recovery that needs stored artifacts ----------------------


def test_s3_down_during_a_recovery_from_stored_artifacts_falls_back_to_the_event_log(
    pipeline: Pipeline, s3_env: str, monkeypatch: pytest.MonkeyPatch, moto_server: str
) -> None:
    monkeypatch.setenv("ORCHESTRATION_ARTIFACTS_URI", f"s3://{s3_env}/dbt")
    monkeypatch.setenv("ORCHESTRATION_REPORT_MODEL", "no_such_model")  # no S3 IO manager step
    pipeline.faults().inject(MIDDLE_MODEL, times=1)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    s3_store = open_store(f"s3://{s3_env}/dbt")
    assert stored_run_results(s3_store, failed.run_id)  # the artifacts a recovery would read

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # S3 is gone
    config = {"ops": {"dbt_models": {"config": {"retry_from_run_id": failed.run_id}}}}
    recovery = pipeline.run_job("recover_from_artifacts", run_config=config)
    kept: list[Path] = []
    try:
        assert recovery.success
        logs = run_logs(pipeline, recovery.run_id)
        # A clear message: what could not be read, and where the plan came from instead.
        assert f"stored dbt artifacts of run {failed.run_id} unusable, using the event log" in (
            logs
        )
        assert "Could not read s3://" in logs
        assert f"Recovery plan from event log of run {failed.run_id}" in logs
        # The plan is still right: exactly the failed model and its downstream were rebuilt.
        needed = {MIDDLE_MODEL} | model_descendants(MIDDLE_MODEL)
        kept = [Path(p) for p in re.findall(r"The files were kept at (\S+?)\. ", logs)]
        assert kept, logs  # this run's own upload failed too, and said where the files are
        (results_file,) = [p / "run_results.json" for p in kept if "dbt_models" in p.name]
        built = statuses(json.loads(results_file.read_text()))
        assert set(built) == needed and set(built.values()) == {"success"}
    finally:
        for folder in kept:
            shutil.rmtree(folder, ignore_errors=True)

    # Nothing lost: once S3 is back, the failed run's artifacts are all still there.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    (results,) = stored_run_results(open_store(f"s3://{s3_env}/dbt"), failed.run_id)
    assert statuses(results)[MIDDLE_MODEL] == "error"


# --- (c) a truncated, corrupt or foreign run_results.json ---------------------------------


def valid_run_results() -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.11.0",
            "generated_at": "2026-01-01T04:00:00Z",
            "invocation_id": str(uuid.uuid4()),
        },
        "results": [
            {
                "unique_id": f"model.crm_revenue.{MIDDLE_MODEL}",
                "status": "error",
                "message": "connection reset by peer",
                "execution_time": 0.1,
            }
        ],
        "elapsed_time": 1.0,
        "args": {"which": "build"},
    }


BAD_RUN_RESULTS = {
    "truncated": (
        json.dumps(valid_run_results()).encode()[:120],
        "is truncated or not valid JSON",
    ),
    "corrupt": (b"\xff\xfe\x00\x9c binary garbage \x00", "is not UTF-8 text"),
    "foreign": (
        json.dumps(
            {
                "metadata": {
                    "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"
                },
                "nodes": {},
                "sources": {},
            }
        ).encode(),
        "is a dbt manifest artifact",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RUN_RESULTS))
def test_a_bad_run_results_file_fails_the_recovery_naming_the_file_and_the_problem(
    pipeline: Pipeline, case: str
) -> None:
    data, problem = BAD_RUN_RESULTS[case]
    store = open_store(pipeline.artifacts_uri)
    key = f"external/{case}/run_results.json"
    store.put_bytes(key, data)

    config = {"ops": {"dbt_models": {"config": {"retry_from_artifacts": f"external/{case}"}}}}
    recovery = pipeline.run_job("recover_from_artifacts", run_config=config)
    assert not recovery.success
    errors = error_texts(pipeline, recovery.run_id)
    assert f"{store.describe(key)} {problem}" in errors, errors
    assert "RunResultsError" in errors
    # Rejected before dbt started: nothing was built from a plan that could not be read.
    assert stored_run_results(store, recovery.run_id) == []


# --- (d) concurrent sensor evaluations -----------------------------------------------------


def submit_like_the_daemon(instance: DagsterInstance, request: RunRequest) -> DagsterRun | None:
    """What the sensor daemon does with a RunRequest: look the run key up among this sensor's
    runs (Dagster's own ``fetch_existing_runs``) and create the run only if it is new."""
    existing = fetch_existing_runs(instance, SimpleNamespace(name=SENSOR), [request])
    if request.run_key in existing:
        return None
    from orchestration.definitions import build_definitions

    job_def = build_definitions().get_implicit_global_asset_job_def()
    return instance.create_run_for_job(
        job_def,
        asset_selection=frozenset(request.asset_selection or []),
        tags={**request.tags, RUN_KEY_TAG: request.run_key or "", SENSOR_NAME_TAG: SENSOR},
        status=DagsterRunStatus.NOT_STARTED,  # QUEUED needs a remote origin (a webserver)
    )


@ON_POSTGRES
def test_two_concurrent_sensor_evaluations_launch_one_retry(
    pipeline: Pipeline, no_backoff: None
) -> None:
    pipeline.faults().inject(MIDDLE_MODEL, times=1)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success

    # Two daemons (each its own instance) evaluating the sensor at the same moment, with the
    # same cursor.
    drivers = [SensorDriver(pipeline), SensorDriver(pipeline)]
    start = threading.Barrier(len(drivers))

    def evaluate(driver: SensorDriver) -> Any:
        start.wait(timeout=60)
        return driver.tick()

    with ThreadPoolExecutor(max_workers=len(drivers)) as pool:
        ticks = list(pool.map(evaluate, drivers))
    requests = [request for tick in ticks for request in tick.run_requests]
    assert len(requests) == 2, [tick.skip_message for tick in ticks]
    first, second = requests
    assert first.run_key == second.run_key == f"retry:{failed.run_id}:1"
    assert selected(first) == selected(second)

    with pipeline.instance() as instance:
        created = [submit_like_the_daemon(instance, request) for request in requests]
        assert [run is not None for run in created] == [True, False]
        runs = instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: first.run_key or ""}))
    assert len(runs) == 1

    # And a third evaluation that lost the cursor sees the retry in flight: nothing new.
    late = SensorDriver(pipeline).tick()
    assert late.run_requests == []


# --- (e) many failed runs at once ----------------------------------------------------------


def independent_models(count: int) -> list[str]:
    """``count`` models none of which is downstream of another: separate failure chains."""
    chosen: list[str] = []
    for model in sorted(all_models()):
        below = model_descendants(model)
        if model not in set().union(*(model_descendants(c) for c in chosen)) and not (
            below & set(chosen)
        ):
            chosen.append(model)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"the project has fewer than {count} independent models")


def fail_run_of(
    instance: DagsterInstance,
    keys: frozenset[AssetKey],
    tags: dict[str, str] | None = None,
) -> DagsterRun:
    """A run that planned ``keys`` and whose worker then died (as run monitoring reports it)."""
    from orchestration.definitions import build_definitions

    job_def = build_definitions().get_implicit_global_asset_job_def()
    run = instance.create_run_for_job(
        job_def, asset_selection=keys, tags=tags or {}, status=DagsterRunStatus.NOT_STARTED
    )
    instance.report_run_failed(run, monitoring_failure_message(run.run_id, 4242))
    return run


@ON_POSTGRES
def test_five_failure_chains_at_once_are_bounded_by_the_retry_budget(
    pipeline: Pipeline, no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 2
    monkeypatch.setenv("ORCHESTRATION_RETRY_MAX_ATTEMPTS", str(budget))
    models = independent_models(5)
    with pipeline.instance() as instance:
        roots = {
            fail_run_of(instance, frozenset({AssetKey(model)})).run_id: model for model in models
        }

    driver = SensorDriver(pipeline)
    launched: list[RunRequest] = []
    ticks = []
    for _ in range(budget + 2):  # more ticks than the budget allows retries
        tick = driver.tick()
        ticks.append(tick)
        assert len(tick.run_requests) <= len(roots)
        launched.extend(tick.run_requests)
        with pipeline.instance() as instance:
            for request in tick.run_requests:
                # Every retry dies too: the budget, not luck, has to stop the work.
                fail_run_of(
                    instance,
                    frozenset(request.asset_selection or []),
                    {**request.tags, RUN_KEY_TAG: request.run_key or "", SENSOR_NAME_TAG: SENSOR},
                )

    assert len(launched) == len(roots) * budget
    attempts: dict[str, set[str]] = {}
    for request in launched:
        attempts.setdefault(request.tags[RETRY_ROOT_TAG], set()).add(request.tags[ATTEMPT_TAG])
    assert attempts == {root: {"1", "2"} for root in roots}
    assert len({request.run_key for request in launched}) == len(launched)
    gave_up, after = ticks[budget], ticks[budget + 1]
    assert gave_up.run_requests == [] and after.run_requests == []
    exhausted = f"after {budget} of {budget} retry attempts"
    assert (gave_up.skip_message or "").count(exhausted) == len(roots), gave_up.skip_message
    assert (after.skip_message or "").count("already reported") == len(roots), after.skip_message


@ON_POSTGRES
def test_five_failed_runs_of_the_same_assets_make_one_retry(
    pipeline: Pipeline, no_backoff: None
) -> None:
    keys = frozenset({AssetKey(MIDDLE_MODEL)})
    with pipeline.instance() as instance:
        runs = [fail_run_of(instance, keys) for _ in range(5)]

    tick = SensorDriver(pipeline).tick()
    # The latest failure owns the asset now; the four before it are history, not work.
    assert [request.run_key for request in tick.run_requests] == [f"retry:{runs[-1].run_id}:1"]


# --- (f) secrets never reach logs, tags, run config or stored artifacts --------------------


def stored_text_everywhere(pipeline: Pipeline) -> Iterator[tuple[str, bytes]]:
    """(where, content) for everything Dagster and the artifact store keep about the runs."""
    with pipeline.instance() as instance:
        for run in instance.get_runs():
            yield f"run {run.run_id} tags", json.dumps(run.tags).encode()
            yield f"run {run.run_id} config", json.dumps(run.run_config).encode()
            for entry in instance.all_logs(run.run_id):
                yield f"run {run.run_id} event", serialize_value(entry).encode()
    for root in (Path(pipeline.artifacts_uri), pipeline.dagster_home):
        for path in root.rglob("*"):
            if path.is_file():
                yield str(path), path.read_bytes()


@ON_POSTGRES
def test_secrets_from_the_environment_are_in_no_log_tag_run_config_or_stored_artifact(
    pipeline: Pipeline,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    no_backoff: None,
) -> None:
    # The warehouse login really needs this password (the server checks it over TCP).
    warehouse_password = f"wh-{uuid.uuid4().hex}"
    database = postgres_server.create_database(
        "warehouse", user=f"dbt_{uuid.uuid4().hex[:8]}", password=warehouse_password
    )
    use_postgres_warehouse(monkeypatch, database, pipeline.root)
    aws_secret = f"aws-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTSECRETSCAN")
    secrets = {
        "DBT_POSTGRES_PASSWORD": warehouse_password,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
        "DAGSTER_PG_PASSWORD": os.environ["DAGSTER_PG_PASSWORD"],  # the instance's storage
    }

    # A control: a marker that *is* meant to be stored (it is the failure's message), to show
    # that the search below reads the places a secret could leak into.
    marker = f"marker-{uuid.uuid4().hex}"
    pipeline.faults().inject(
        MIDDLE_MODEL,
        times=1,
        message=f"connection reset by peer (injected transient fault {marker})",
    )
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    tick = SensorDriver(pipeline).tick()
    assert len(tick.run_requests) == 1, tick.skip_message
    retry = execute_retry(pipeline, tick.run_requests[0])
    assert retry.success

    searched: list[str] = []
    found_marker: list[str] = []
    for where, content in stored_text_everywhere(pipeline):
        searched.append(where)
        for name, value in secrets.items():
            assert value.encode() not in content, f"{name} leaked into {where}"
        if marker.encode() in content:
            found_marker.append(where)
    # The search read every kind of place: events, tags, and dbt's artifacts of both runs.
    assert {"manifest.json", "run_results.json", "dbt.log"} <= {Path(w).name for w in searched}
    assert any(w.endswith(" event") for w in found_marker), found_marker
    assert any(w.endswith(" tags") for w in found_marker), found_marker
    assert any(w.endswith("run_results.json") for w in found_marker), found_marker
    assert any(w.endswith("dbt.log") for w in found_marker), found_marker
