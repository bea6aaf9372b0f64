"""Automatic recovery end to end: the real webserver and daemon, no click after the launch.

A transient fault makes ``daily_pipeline`` fail; ``retry_failed_assets_sensor``, ticking in the
real ``dagster-daemon``, must alone bring every asset back to materialized with exactly one
retry run that rebuilds only the failed model and its downstream (asserted on the retry's
stored run_results.json).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from dagster._core.scheduler.instigation import TickStatus

from orchestration.artifacts.store import open_store
from tests.conftest import statuses, stored_run_results
from tests.dbt_graph import model_descendants
from tests.e2e.conftest import DagsterServices

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MIDDLE_MODEL = "int_deals__converted"
RETRY_OF_TAG = "orchestration/retry_of"
RETRY_ROOT_TAG = "orchestration/retry_root"
RETRY_WAIT_SECONDS = 240
SENSOR_INTERVAL_SECONDS = 5

LAUNCH = """
mutation($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

RUNS_TAGGED = """
query($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


@pytest.fixture
def services(pipeline: Any, monkeypatch: pytest.MonkeyPatch, request: Any) -> DagsterServices:
    """The services, started only after the sensor's settings are in the environment."""
    monkeypatch.setenv("ORCHESTRATION_RETRY_SENSOR_RUNNING", "1")
    monkeypatch.setenv("ORCHESTRATION_RETRY_SENSOR_INTERVAL_SECONDS", str(SENSOR_INTERVAL_SECONDS))
    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
    monkeypatch.delenv("ORCHESTRATION_ALERT_WEBHOOK_URL", raising=False)
    return request.getfixturevalue("dagster_services")


def launch(services: DagsterServices, job: str) -> str:
    data = services.graphql(
        "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
    )
    location = data["workspaceOrError"]["locationEntries"][0]["name"]
    result = services.graphql(
        LAUNCH,
        {
            "executionParams": {
                "selector": {
                    "repositoryLocationName": location,
                    "repositoryName": "__repository__",
                    "pipelineName": job,
                },
                "mode": "default",
            }
        },
    )["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def runs_tagged(services: DagsterServices, key: str, value: str) -> list[dict[str, Any]]:
    data = services.graphql(RUNS_TAGGED, {"key": key, "value": value})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return data["results"]


def wait_for_retry(services: DagsterServices, failed_run: str) -> str:
    deadline = time.monotonic() + RETRY_WAIT_SECONDS
    while time.monotonic() < deadline:
        found = runs_tagged(services, RETRY_OF_TAG, failed_run)
        if found:
            return found[0]["runId"]
        time.sleep(1)
    raise AssertionError(
        f"no retry of {failed_run} after {RETRY_WAIT_SECONDS}s; logs in {services.log_dir}"
    )


def test_the_sensor_alone_recovers_a_transient_failure_rebuilding_only_what_failed(
    services: DagsterServices,
) -> None:
    pipeline = services.pipeline
    pipeline.faults().inject(MIDDLE_MODEL, times=1)

    failed_run = launch(services, "daily_pipeline")
    assert services.wait_for_run(failed_run) == "FAILURE"

    retry_run = wait_for_retry(services, failed_run)
    assert services.wait_for_run(retry_run, timeout_seconds=RETRY_WAIT_SECONDS) == "SUCCESS"

    # The next daemon tick that starts after the retry ended sees it succeeded: it must find
    # nothing left to retry and launch nothing.
    with pipeline.instance() as instance:
        retry_ended = instance.get_run_record_by_id(retry_run).end_time
    assert retry_ended is not None
    tick = services.wait_for_sensor_tick(
        "retry_failed_assets_sensor", started_after=retry_ended, timeout_seconds=120
    )
    assert tick.status is TickStatus.SKIPPED, (tick.status, tick.tick_data.error)
    assert tick.run_ids == [] and tick.run_keys == []
    chain = runs_tagged(services, RETRY_ROOT_TAG, failed_run)
    assert [run["runId"] for run in chain] == [retry_run], chain
    tags = {tag["key"]: tag["value"] for tag in chain[0]["tags"]}
    assert tags["orchestration/attempt"] == "1"
    assert tags["orchestration/trigger"] == "retry_failed_assets_sensor"
    assert tags["dagster/run_key"] == f"retry:{failed_run}:1"

    expected = {MIDDLE_MODEL} | model_descendants(MIDDLE_MODEL)
    rebuilt: dict[str, str] = {}
    for document in stored_run_results(open_store(pipeline.artifacts_uri), retry_run):
        rebuilt.update(statuses(document))
    assert set(rebuilt) == expected, "the retry must rebuild only the failed model and downstream"
    assert set(rebuilt.values()) == {"success"}

    from dagster import AssetKey

    from orchestration.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    keys = [
        key
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_executable and key.path[0] != "ci"  # slim CI's copies: not built
    ]
    with pipeline.instance() as instance:
        records = instance.get_asset_records(keys)
    by_key = {record.asset_entry.asset_key: record.asset_entry for record in records}
    not_materialized = sorted(
        key.to_user_string()
        for key in keys
        if by_key.get(key) is None
        or by_key[key].last_materialization_record is None
        or by_key[key].last_materialization_record.run_id != by_key[key].last_run_id
    )
    assert not_materialized == [], f"still not materialized after the retry: {not_materialized}"
    assert by_key[AssetKey(MIDDLE_MODEL)].last_materialization_record.run_id == retry_run
