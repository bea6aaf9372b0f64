"""A new run's planned events in bulk: the rows ``store_event`` writes for each, in one
multi-row statement per table.

When Dagster creates a run it writes one ``ASSET_MATERIALIZATION_PLANNED`` per asset and one
``ASSET_CHECK_EVALUATION_PLANNED`` per check of the steps it will execute, as one batch
(``DAGSTER_EVENT_BATCH_SIZE``): 1,396 events at 1,000 models for a step-level *From failure*.
Stock storages write them event by event — the event row, then the asset's ``last_run_id`` /
timestamp (an insert that fails for a known asset, then an update), or a PLANNED check
execution — three to four statements per event. The rows here are exactly those: planned events
carry no tags and change no run status, so nothing else is written for them
(``tests/integration/test_embedded_instance.py`` compares both storages row by row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from sqlalchemy.engine import Connection

PLANNED_EVENTS = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    }
)


def all_planned(events: Sequence[EventLogEntry]) -> bool:
    return bool(events) and all(event.dagster_event_type in PLANNED_EVENTS for event in events)


def insert_events_returning_ids(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """One multi-row insert into ``event_logs``; the new ids, in the order of ``rows``."""
    statement = SqlEventLogStorageTable.insert().returning(
        SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
    )
    return list(conn.execute(statement, rows).scalars().all())


def upsert_batched(conn: Connection, upsert: Any, rows: list[dict[str, Any]]) -> None:
    """``upsert`` (an ``INSERT … ON CONFLICT``) for every row of ``rows``, sent as multi-row
    ``VALUES`` statements.

    SQLAlchemy 2.1 sends a plain INSERT's rows that way ("insertmanyvalues"), but an upsert
    only when it has ``RETURNING``; otherwise through the driver's executemany, which psycopg2
    runs as one round trip per row: 1,000 asset-key upserts took 0.30–0.40 s against a local
    PostgreSQL, 0.04–0.06 s with the ``RETURNING`` added here (its rows are not read)."""
    conn.execute(upsert.returning(upsert.table.c.id), rows)


def store_planned_rows(
    storage: Any,
    conn: Connection,
    dialect_insert: Callable[[Any], Any],
    events: Sequence[EventLogEntry],
    rows: Sequence[dict[str, Any]],
    event_ids: Sequence[int],
) -> None:
    """The asset-key upserts and PLANNED check executions for ``events`` (their event-log
    ``rows``, stored under ``event_ids``), on ``conn``; ``dialect_insert`` is the dialect's
    ``insert`` that supports ``ON CONFLICT`` (SQLite's or PostgreSQL's)."""
    has_index_cols = storage._has_asset_key_index_cols_on_connection(conn)  # noqa: SLF001
    asset_rows, check_rows = [], []
    for event, row, event_id in zip(events, rows, event_ids, strict=True):
        dagster_event = event.get_dagster_event()
        if dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            values = storage._get_asset_entry_values(event, event_id, has_index_cols)  # noqa: SLF001
            asset_rows.append({"asset_key": dagster_event.asset_key.to_string(), **values})
        else:
            check_rows += planned_check_rows(storage, event, row["event"], event_id)
    if asset_rows:
        upsert = dialect_insert(AssetKeyTable)
        columns = [name for name in asset_rows[0] if name != "asset_key"]
        upsert_batched(
            conn,
            upsert.on_conflict_do_update(
                index_elements=[AssetKeyTable.c.asset_key],
                set_={name: upsert.excluded[name] for name in columns},
            ),
            asset_rows,
        )
    if check_rows:
        conn.execute(AssetCheckExecutionsTable.insert(), check_rows)


def planned_check_rows(
    storage: Any, event: EventLogEntry, body: str, event_id: int
) -> list[dict[str, Any]]:
    """The rows stock ``_store_asset_check_evaluation_planned`` inserts for ``event``
    (``body``: the event serialized, as its event-log row holds it)."""
    planned = event.get_dagster_event().event_specific_data
    partitions = planned.partitions_subset
    return [
        {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "partition": partition,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": body,
            "evaluation_event_timestamp": storage._event_insert_timestamp(event),  # noqa: SLF001
            "evaluation_event_storage_id": event_id,
        }
        for partition in (partitions.get_partition_keys() if partitions else [None])
    ]
