"""A run's facts read from the event log's columns and Dagster's check table are the facts
read event by event (``orchestration.history.run_events``), on SQLite and PostgreSQL.

Scenario: every test of ``stg_crm__deals`` is made to fail (one of them has warn severity),
so dbt skips everything downstream of it: the run planned assets it never materialized,
failed a blocking check, "failed" a warn-only one, never ran the checks below, and failed its
dbt step."""

from __future__ import annotations

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    DagsterEvent,
    DagsterEventType,
    MetadataValue,
    job,
)
from dagster._core.events import StepMaterializationData

from orchestration.history.run_events import (
    RunEventFacts,
    facts_from_records,
    read_run_event_facts,
)
from orchestration.tags import CARRIED_OVER_METADATA_KEY
from tests.conftest import BOTH_STORAGES, Pipeline

pytestmark = [pytest.mark.integration, BOTH_STORAGES]

FAILING_TESTS_OF = "stg_crm__deals"
BELOW = "int_deals__converted"
BLOCKING = AssetCheckKey(AssetKey(FAILING_TESTS_OF), "not_null_stg_crm__deals_deal_id")
WARN_ONLY = AssetCheckKey(AssetKey(FAILING_TESTS_OF), "not_null_stg_crm__deals_close_date")


@job
def older_run() -> None:
    """Stands for a run recorded by an older version of this project (never executed)."""


def every_event_read_whole(pipeline: Pipeline, run_id: str) -> RunEventFacts:
    with pipeline.instance() as instance:
        return facts_from_records(instance.all_logs(run_id))


def report_materialization(pipeline: Pipeline, run_id: str, **metadata: str) -> None:
    """A materialization in ``run_id`` as Dagster stores one (an older run's record)."""
    materialization = AssetMaterialization(
        AssetKey("fct_deals"),
        description=f"mentions {CARRIED_OVER_METADATA_KEY} in its text only",
        metadata={key: MetadataValue.text(value) for key, value in metadata.items()},
    )
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=older_run.name,
        event_specific_data=StepMaterializationData(materialization),
    )
    with pipeline.instance() as instance:
        instance.report_dagster_event(event, run_id=run_id)


def test_the_column_reader_finds_the_same_facts_as_reading_every_event(
    pipeline: Pipeline,
) -> None:
    pipeline.faults().inject(FAILING_TESTS_OF, target="test")
    run_id = pipeline.run_job("daily_pipeline").run_id
    with pipeline.instance() as instance:
        facts = read_run_event_facts(instance, run_id, look_for_carried_over=True)
    checks = {check.key: check.passed for check in facts.checks}

    assert facts == every_event_read_whole(pipeline, run_id)
    assert facts.failed_steps == {"dbt_models"}
    assert {FAILING_TESTS_OF, BELOW} <= facts.planned
    assert FAILING_TESTS_OF in facts.materialized and BELOW not in facts.materialized
    assert checks[BLOCKING] is False
    assert checks[WARN_ONLY] is True  # a warn is a pass to the rule
    below_checks = [passed for key, passed in checks.items() if key.asset_key == AssetKey(BELOW)]
    assert below_checks and set(below_checks) == {None}  # planned, never run
    assert facts.carried_over is False


def test_the_carried_over_marker_of_older_runs_is_found_only_in_metadata(
    pipeline: Pipeline,
) -> None:
    with pipeline.instance() as instance:
        run_id = instance.create_run_for_job(older_run).run_id
    report_materialization(pipeline, run_id)  # the key in its description only
    with pipeline.instance() as instance:
        assert not read_run_event_facts(instance, run_id, look_for_carried_over=True).carried_over
        assert (
            read_run_event_facts(instance, run_id, look_for_carried_over=False).carried_over is None
        )

    report_materialization(pipeline, run_id, **{CARRIED_OVER_METADATA_KEY: "parent-run"})
    with pipeline.instance() as instance:
        assert read_run_event_facts(instance, run_id, look_for_carried_over=True).carried_over
    assert every_event_read_whole(pipeline, run_id).carried_over
