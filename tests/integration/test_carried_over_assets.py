"""A *From failure* re-execution carries over what already succeeded, and records it as such:
no new materialization for data it did not rebuild, while the steps downstream still run.

Scenario: ``fct_pipeline_by_stage`` (a leaf model) fails; ``fct_revenue_by_owner`` succeeds,
but ``revenue_report`` (a Python asset reading it) is skipped. *From failure* re-runs the dbt
step — only ``fct_pipeline_by_stage`` — and ``revenue_report``, which needs the dbt op to yield
``fct_revenue_by_owner``'s output. Every test runs on SQLite and PostgreSQL storage."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType

from orchestration.artifacts.store import open_store
from tests.conftest import BOTH_STORAGES, Pipeline, plan_json, statuses, stored_run_results

pytestmark = [pytest.mark.integration, BOTH_STORAGES]

FAILING = "fct_pipeline_by_stage"
CARRIED = AssetKey("fct_revenue_by_owner")
REPORT = AssetKey("revenue_report")
CHECK = AssetCheckKey(CARRIED, "unique_fct_revenue_by_owner_owner_contact_id")


def latest_state(pipeline: Pipeline) -> dict[str, Any]:
    """What freshness, "last materialized", automation conditions and asset health read for
    the carried-over asset: its latest materialization and its checks' last results."""
    with pipeline.instance() as instance:
        entry = instance.get_latest_materialization_event(CARRIED)
        (record,) = instance.fetch_materializations(CARRIED, limit=1).records
        summaries = instance.event_log_storage.get_asset_check_summary_records([CHECK])
    assert entry is not None and entry.dagster_event is not None
    assert entry.run_id == record.run_id
    materialization = entry.dagster_event.step_materialization_data.materialization
    last = summaries[CHECK].last_completed_check_execution_record
    return {
        "run_id": record.run_id,
        "storage_id": record.storage_id,
        "data_version": materialization.tags.get("dagster/data_version"),
        "check": (last.run_id, last.status.value) if last else None,
    }


def materialized_in(pipeline: Pipeline, run_id: str) -> dict[AssetKey, Any]:
    with pipeline.instance() as instance:
        entries = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    return {
        e.dagster_event.asset_key: e.dagster_event.step_materialization_data.materialization
        for e in entries
    }


def test_a_carried_over_asset_keeps_the_materialization_of_the_run_that_built_it(
    pipeline: Pipeline,
) -> None:
    pipeline.faults().inject(FAILING, times=1)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    assert CARRIED in materialized_in(pipeline, failed.run_id)
    assert REPORT not in materialized_in(pipeline, failed.run_id)
    before = latest_state(pipeline)
    assert before["run_id"] == failed.run_id and before["data_version"]
    assert before["check"] == (failed.run_id, "SUCCEEDED")

    recovery = pipeline.reexecute(failed.run_id)
    assert recovery.success
    results = stored_run_results(open_store(pipeline.artifacts_uri), recovery.run_id)
    assert {m for r in results for m, s in statuses(r).items() if s != "skipped"} == {FAILING}

    # The downstream step still ran, on the data built in the failed run ...
    rebuilt = materialized_in(pipeline, recovery.run_id)
    assert set(rebuilt) == {AssetKey(FAILING), REPORT}
    pointer = rebuilt[REPORT].tags["dagster/input_event_pointer/fct_revenue_by_owner"]
    assert int(pointer) == before["storage_id"]
    # ... and the carried-over asset's latest materialization, data version and check
    # results are still that run's.
    assert latest_state(pipeline) == before

    # The chain's plan: nothing left to do, the carried-over asset decided by its builder.
    plan = plan_json(recovery.run_id)
    assert plan["assets"] == []
    carried = {c["key"]: c["run_id"] for c in plan["carried_over"]}
    assert carried[CARRIED.to_user_string()] == failed.run_id
    assert carried[FAILING] == carried["revenue_report"] == recovery.run_id
