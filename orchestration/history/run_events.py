"""One run's asset facts from the event log: what it planned, materialized and checked.

A recovery reads the failed run's facts before dbt starts, on every path (*From failure*,
*From asset failure*, the retry sensor's run). Read as event records, that is every planned
event, materialization and check evaluation of the run, each deserialized whole: 2,677
events and 0.48 s of the run worker's time on a 1,000-model project, almost all of it in
Dagster's deserializer (``benchmarks/RESULTS.md``, figure 9).

Every fact but two is in the event log's index columns: event type, asset key and step key.
Checks are in Dagster's asset-check table (one row per check and run, its status updated
when the evaluation lands), which is what Dagster's own UI reads. So on a SQL event log
(SQLite, PostgreSQL, the in-memory one) this module reads columns, and deserializes only:

- the evaluations of *failed* checks, for their severity (a WARN is a pass to the rule);
- materializations whose body names ``CARRIED_OVER_METADATA_KEY``, found by a text match
  and then confirmed from the deserialized metadata — the marker of carried-over outputs
  recorded by older versions of this project, asked for only when the run record cannot
  tell (``orchestration.history.runs``).

Any other storage, or one whose schema predates the asset-check table, is read event by
event as before (``facts_from_records``). Both readers return the same facts; a test
compares them on real runs (``tests/integration/test_run_events.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as db
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.instance import DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._serdes import deserialize_value

from orchestration.tags import CARRIED_OVER_METADATA_KEY

_COLUMN_EVENT_TYPES = (
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.STEP_FAILURE,
)
_CHECK_EVENT_TYPES = (
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
)


@dataclass(frozen=True)
class CheckFact:
    """One check of the run: planned only (``passed is None``), passed, or failed."""

    key: AssetCheckKey
    passed: bool | None


@dataclass(frozen=True)
class RunEventFacts:
    """What the recovery planner reads from one run's event log; asset keys as user strings."""

    planned: frozenset[str]
    materialized: frozenset[str]
    failed_steps: frozenset[str]
    checks: tuple[CheckFact, ...]
    carried_over: bool | None
    """Whether a materialization carries the carried-over marker; ``None`` when not asked."""


def read_run_event_facts(
    instance: DagsterInstance, run_id: str, *, look_for_carried_over: bool
) -> RunEventFacts:
    """The run's facts, from columns where the storage allows (module docstring)."""
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage) and storage.supports_asset_checks:
        return _facts_from_columns(storage, run_id, look_for_carried_over=look_for_carried_over)
    event_types = {*_COLUMN_EVENT_TYPES, *_CHECK_EVENT_TYPES}
    facts = facts_from_records(instance.all_logs(run_id, of_type=event_types))
    return facts if look_for_carried_over else replace(facts, carried_over=None)


def _facts_from_columns(
    storage: SqlEventLogStorage, run_id: str, *, look_for_carried_over: bool
) -> RunEventFacts:
    table = SqlEventLogStorageTable
    by_type: dict[str, set[str]] = {event_type.value: set() for event_type in _COLUMN_EVENT_TYPES}
    query = db.select(table.c.dagster_event_type, table.c.asset_key, table.c.step_key).where(
        table.c.run_id == run_id,
        table.c.dagster_event_type.in_([event_type.value for event_type in _COLUMN_EVENT_TYPES]),
    )
    with storage.run_connection(run_id) as conn:
        rows = conn.execute(query).fetchall()
        carried_over = _has_carried_over_marker(conn, run_id) if look_for_carried_over else None
    for event_type, asset_key, step_key in rows:
        if event_type == DagsterEventType.STEP_FAILURE.value:
            if step_key:
                by_type[event_type].add(step_key)
        elif asset_key:
            by_type[event_type].add(AssetKey.from_db_string(asset_key).to_user_string())
    return RunEventFacts(
        planned=frozenset(by_type[DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value]),
        materialized=frozenset(by_type[DagsterEventType.ASSET_MATERIALIZATION.value]),
        failed_steps=frozenset(by_type[DagsterEventType.STEP_FAILURE.value]),
        checks=_checks_from_table(storage, run_id),
        carried_over=carried_over,
    )


def _checks_from_table(storage: SqlEventLogStorage, run_id: str) -> tuple[CheckFact, ...]:
    """The run's rows of Dagster's asset-check table: planned, succeeded or failed."""
    table = AssetCheckExecutionsTable
    query = (
        db.select(
            table.c.asset_key,
            table.c.check_name,
            table.c.execution_status,
            table.c.evaluation_event,
        )
        .where(table.c.run_id == run_id)
        .order_by(table.c.id)
    )
    with storage.index_connection() as conn:
        rows = conn.execute(query).fetchall()
    checks: dict[AssetCheckKey, CheckFact] = {}
    for asset_key, check_name, status, body in rows:
        key = AssetCheckKey(AssetKey.from_db_string(asset_key), check_name)
        if status == AssetCheckExecutionRecordStatus.PLANNED.value:
            checks.setdefault(key, CheckFact(key, None))
        elif status == AssetCheckExecutionRecordStatus.SUCCEEDED.value:
            checks[key] = CheckFact(key, True)
        else:  # failed: a WARN-severity result is a pass to the rule (see _passed)
            event = deserialize_value(body, EventLogEntry).get_dagster_event()
            checks[key] = CheckFact(key, _passed(event.event_specific_data))
    return tuple(checks.values())


def _has_carried_over_marker(conn: Any, run_id: str) -> bool:
    """Whether a materialization of the run carries the carried-over marker: a text match
    on the bodies, each match confirmed from its deserialized metadata."""
    table = SqlEventLogStorageTable
    query = db.select(table.c.event).where(
        table.c.run_id == run_id,
        table.c.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION.value,
        table.c.event.contains(CARRIED_OVER_METADATA_KEY, autoescape=True),
    )
    for (body,) in conn.execute(query):
        if _marks_carried_over(deserialize_value(body, EventLogEntry)):
            return True
    return False


def facts_from_records(records: Iterable[EventLogEntry]) -> RunEventFacts:
    """The same facts, one deserialized event at a time (any event log storage)."""
    planned: set[str] = set()
    materialized: set[str] = set()
    failed_steps: set[str] = set()
    checks: dict[AssetCheckKey, CheckFact] = {}
    carried_over = False
    for entry in records:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            planned.add(event.asset_key.to_user_string())
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialized.add(event.asset_key.to_user_string())
            carried_over = carried_over or _marks_carried_over(entry)
        elif event.event_type == DagsterEventType.STEP_FAILURE and event.step_key:
            failed_steps.add(event.step_key)
        elif event.event_type in _CHECK_EVENT_TYPES:
            data = event.event_specific_data
            key = getattr(data, "asset_check_key", None)
            if key is None:
                continue
            if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                checks[key] = CheckFact(key, _passed(data))
            else:
                checks.setdefault(key, CheckFact(key, None))
    return RunEventFacts(
        planned=frozenset(planned),
        materialized=frozenset(materialized),
        failed_steps=frozenset(failed_steps),
        checks=tuple(checks.values()),
        carried_over=carried_over,
    )


def _passed(evaluation: Any) -> bool:
    """A WARN-severity result (dbt "warn" on an error-severity test) did not cross the error
    threshold: the rule treats it as passed."""
    return bool(evaluation.passed or evaluation.severity == AssetCheckSeverity.WARN)


def _marks_carried_over(entry: EventLogEntry) -> bool:
    event = entry.dagster_event
    materialization = getattr(event.event_specific_data, "materialization", None) if event else None
    return CARRIED_OVER_METADATA_KEY in (getattr(materialization, "metadata", None) or {})
