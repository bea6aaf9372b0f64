"""The UI's *Re-execute* buttons, through the real webserver and daemon.

Each test launches ``daily_pipeline`` and its re-execution with the GraphQL mutations the UI
sends (``launchPipelineExecution``, ``launchPipelineReexecution``) and asserts on the recovery
run's own stored run_results: exactly the planned models ran.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration.artifacts.store import open_store
from tests.conftest import Pipeline, make_pipeline, reset_caches, statuses, stored_run_results
from tests.dbt_graph import all_models, dbt_tests, model_descendants
from tests.e2e.conftest import DagsterServices, start_services

pytestmark = pytest.mark.e2e

LAUNCH = """
mutation($p: ExecutionParams!) {
  launchPipelineExecution(executionParams: $p) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
REEXECUTE = """
mutation($r: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $r) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, manifest_ready: Path
) -> Iterator[DagsterServices]:
    """One webserver + daemon for the module (each costs ~20 s to start); the retry sensor is
    off so that only the clicks under test recover anything."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        pipeline = make_pipeline(tmp_path_factory.mktemp("ui"), monkeypatch)
        monkeypatch.setenv("ORCHESTRATION_RETRY_SENSOR_RUNNING", "0")
        with start_services(pipeline) as started:
            yield started
    reset_caches()


def location_name(services: DagsterServices) -> str:
    data = services.graphql(
        "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
    )
    return data["workspaceOrError"]["locationEntries"][0]["name"]


def launch(services: DagsterServices, run_config: dict[str, Any] | None = None) -> str:
    params = {
        "selector": {
            "repositoryLocationName": location_name(services),
            "repositoryName": "__repository__",
            "pipelineName": "daily_pipeline",
        },
        "runConfigData": run_config or {},
        "mode": "default",
    }
    result = services.graphql(LAUNCH, {"p": params})["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def reexecute(services: DagsterServices, parent_run_id: str, strategy: str) -> str:
    params = {"parentRunId": parent_run_id, "strategy": strategy, "useParentRunTags": True}
    result = services.graphql(REEXECUTE, {"r": params})["launchPipelineReexecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def executed_models(pipeline: Pipeline, run_id: str) -> set[str]:
    results = stored_run_results(open_store(pipeline.artifacts_uri), run_id)
    return {m for r in results for m, s in statuses(r).items() if s != "skipped"}


def planned_models(run_id: str) -> set[str]:
    from orchestration.cli.plan import compute_plan

    reset_caches()
    return compute_plan(run_id).keys & all_models()


def materialized_and_passed_checks(
    pipeline: Pipeline, run_id: str
) -> tuple[set[str], set[tuple[str, str]]]:
    """The models ``run_id`` materialized and the ``(model, check)`` pairs that passed in it."""
    materialized: set[str] = set()
    passed: set[tuple[str, str]] = set()
    with pipeline.instance() as instance:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type_value == "ASSET_MATERIALIZATION":
                materialized.add(event.asset_key.to_user_string())
            elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                evaluation = event.event_specific_data
                if evaluation.passed:
                    passed.add((evaluation.asset_key.to_user_string(), evaluation.check_name))
    return materialized & all_models(), passed


def fail_then_recover(
    services: DagsterServices,
    strategy: str,
    run_config: dict[str, Any] | None = None,
) -> tuple[str, str]:
    failed = launch(services, run_config)
    assert services.wait_for_run(failed) == "FAILURE"
    recovery = reexecute(services, failed, strategy)
    assert services.wait_for_run(recovery) == "SUCCESS"
    return failed, recovery


@pytest.mark.parametrize("strategy", ["FROM_ASSET_FAILURE", "FROM_FAILURE"])
def test_a_model_error_is_recovered_by_both_buttons(
    services: DagsterServices, strategy: str
) -> None:
    services.pipeline.faults().inject("int_deals__converted", times=1)
    failed, recovery = fail_then_recover(services, strategy)
    expected = {"int_deals__converted"} | model_descendants("int_deals__converted")
    assert executed_models(services.pipeline, recovery) == expected == planned_models(failed)
    # The daemon launched the recovery through the embedded instance's WarmRunLauncher (the
    # worker loads in the background while the first run of the services goes the default way).
    with services.pipeline.instance() as instance:
        messages = [e.message or "" for e in instance.all_logs(recovery)]
    assert any("Started in a warm run worker" in m for m in messages)


def test_from_asset_failure_after_a_failed_test(services: DagsterServices) -> None:
    services.pipeline.faults().inject("stg_crm__deals", target="test", times=1)
    failed, recovery = fail_then_recover(services, "FROM_ASSET_FAILURE")
    expected = {"stg_crm__deals"} | model_descendants("stg_crm__deals")
    assert executed_models(services.pipeline, recovery) == expected == planned_models(failed)


def test_from_asset_failure_after_a_fail_fast_cut_off(services: DagsterServices) -> None:
    from orchestration.cli.plan import compute_plan

    services.pipeline.faults().inject("stg_crm__contacts", times=1)
    config = {"ops": {"dbt_models": {"config": {"fail_fast": True}}}}
    failed, recovery = fail_then_recover(services, "FROM_ASSET_FAILURE", config)
    reset_caches()
    plan = compute_plan(failed)
    tests_only = {a.key for a in plan.assets if a.reason.value == "check_not_executed"}
    # Intended difference (README): a model dbt finished before fail-fast stopped the run is
    # materialized in Dagster but its tests never ran. Our rule rebuilds it; Dagster's *From
    # asset failure* re-runs only its checks, and the op runs exactly those tests.
    executed = executed_models(services.pipeline, recovery)
    assert executed == (plan.keys & all_models()) - tests_only
    assert executed >= {"stg_crm__contacts"} | model_descendants("stg_crm__contacts")
    results = stored_run_results(open_store(services.pipeline.artifacts_uri), recovery)
    tested = {
        r["unique_id"]
        for part in results
        for r in part["results"]
        if r["unique_id"].startswith("test.") and r["status"] == "pass"
    }
    for model in tests_only:
        assert any(model in test for test in tested), f"tests of {model} did not run"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def test_from_asset_failure_after_the_run_worker_was_killed(services: DagsterServices) -> None:
    pipeline = services.pipeline
    run_id = launch(services)
    deadline = time.monotonic() + 180
    worker_pid = None
    with pipeline.instance() as instance:
        while time.monotonic() < deadline:
            events = instance.all_logs(run_id)
            materialized = {
                e.dagster_event.asset_key.to_user_string()
                for e in events
                if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
            }
            checked = sum(
                1
                for e in events
                if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
            )
            # mid-build: most models done, some tested, others not reached yet
            done = len(materialized & all_models())
            if checked >= 5 and len(all_models()) * 0.6 <= done < len(all_models()):
                worker_pid = next(
                    e.dagster_event.pid for e in events if e.dagster_event and e.dagster_event.pid
                )
                break
            time.sleep(0.2)
        assert worker_pid, "the run never got into dbt build"
        for pid in [*_children(worker_pid), worker_pid]:
            os.kill(pid, signal.SIGKILL)
        # What run monitoring does for a worker that died: mark the run failed. (The embedded
        # instance runs no monitoring; deploy/dagster.yaml does, and its WarmRunLauncher
        # reports the dead worker: tests/integration/test_warm_launcher.py.)
        time.sleep(1)
        instance.report_run_failed(
            instance.get_run_by_id(run_id), message="run worker killed (SIGKILL) by the test"
        )
    assert services.wait_for_run(run_id) == "FAILURE"
    from orchestration.cli.plan import compute_plan

    reset_caches()
    plan = compute_plan(run_id)
    planned = plan.keys & all_models()
    # Which models are done depends on when the kill landed, so the expected plan is read from
    # the killed run's own events and the manifest: a model is done when it was materialized
    # and each of its blocking (error-severity) tests passed; every other model, and everything
    # below it, is re-run; a done-but-untested model gets its tests run again.
    materialized, passed = materialized_and_passed_checks(pipeline, run_id)
    blocking = {(model, test) for (model, test), blocks in dbt_tests().items() if blocks}
    untested = {
        model
        for model in materialized
        if any(m == model and (m, test) not in passed for m, test in blocking)
    }
    not_done = all_models() - materialized
    assert not_done, "the kill landed after the last model was built"
    expected = set(not_done) | untested
    for model in not_done | untested:
        expected |= model_descendants(model)
    assert planned == expected
    tests_only = {a.key for a in plan.assets if a.reason.value == "check_not_executed"}
    assert tests_only == untested
    assert {a.reason.value for a in plan.assets} <= {"not_reached", "check_not_executed"}
    recovery = reexecute(services, run_id, "FROM_ASSET_FAILURE")
    assert services.wait_for_run(recovery) == "SUCCESS"
    # models killed mid-flight are rebuilt; a model built but not yet tested gets its tests
    # (the same intended difference as after --fail-fast)
    assert executed_models(pipeline, recovery) == planned - tests_only
