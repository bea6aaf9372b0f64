"""Dagster's SQLite event log, minus the engine it builds for every write.

The stock ``SqliteEventLogStorage`` creates a SQLAlchemy engine (``NullPool``) for every
connection and disposes it afterwards: each event written pays for an engine, a new SQLite
connection and its PRAGMA probes, twice for an asset event (its run shard and the index shard).
That is most of the 5–13 ms per event the benchmarks measured, and with a step-level
re-execution planning every asset of the dbt op it is tens of seconds before a run even starts.

``EmbeddedSqliteEventLogStorage`` runs exactly the same SQL in the same transactions, with the
same ``journal_mode`` (WAL, set by Dagster when it creates a shard) and the same ``synchronous``
setting (SQLite's default, FULL), so what is durable after a crash is unchanged. It differs in
these ways only:

- one engine per shard is kept (the index shard and the most recent run shards), per process:
  a forked child builds its own;
- ``store_event_batch`` — what Dagster calls for events it batches when ``DAGSTER_EVENT_BATCH_SIZE``
  is set, e.g. the planned events it writes when it creates a run — writes a run's events in one
  transaction per shard instead of one per event. The events and rows are the same; a crash in
  the middle stores none of the batch instead of a prefix of it;
- a shard that already carries an alembic revision is not checked against Dagster's migration
  scripts (the stock check loads all ~90 of them, ~50 ms, for every shard a process opens, and
  then does nothing when the shard has a revision); a shard without one goes the stock way;
- the schema probes Dagster makes for every event are answered once
  (``orchestration.instance.schema_facts``), and an asset event's row in the asset-key table is
  written with one upsert, as dagster-postgres writes it, instead of a failing insert + update;
- a batch of planned events only (a new run's) is written with one multi-row statement per
  table: the same rows as event by event.

It is the default of the embedded instance (``orchestration.instance.config``); production uses
PostgreSQL (``deploy/dagster.yaml``, ``orchestration.instance.postgres_event_log``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import (
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from orchestration.instance.planned_events import (
    all_planned,
    insert_events_returning_ids,
    store_planned_rows,
)
from orchestration.instance.schema_facts import SchemaFactsCache

RUN_SHARD_ENGINES = 8
"""Run shards whose engine is kept (one open SQLite file each); older ones are disposed."""


class EmbeddedSqliteEventLogStorage(SchemaFactsCache, SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one engine per shard, one transaction per batch, and
    schema probes answered once (``orchestration.instance.schema_facts``)."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        # Before the stock constructor: it already connects (to create the index shard).
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._batch = threading.local()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> EmbeddedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (caller holds ``_db_lock``)."""
        if self._engines_pid != os.getpid():  # a forked child: never reuse the parent's files
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,  # one connection, used under _db_lock only
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            self._engines[shard] = engine
            run_shards = [name for name in self._engines if name != INDEX_SHARD_NAME]
            for stale in run_shards[:-RUN_SHARD_ENGINES]:
                self._engines.pop(stale).dispose()
        else:
            self._engines.move_to_end(shard)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """The stock creation and stamping of a shard, for a shard that has no alembic
        revision yet; the stock check acts on nothing else (module docstring)."""
        with engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision():
                return
        super()._initdb(engine, for_index_shard=for_index_shard)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        open_in_batch = getattr(self._batch, "connections", {})
        if shard in open_in_batch:  # inside store_event_batch: its transaction
            yield open_in_batch[shard]
            return
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Each run's events in one transaction on its shard and one on the index shard."""
        by_run: dict[str, list[EventLogEntry]] = {}
        for event in events:
            by_run.setdefault(event.run_id, []).append(event)
        for run_id, run_events in by_run.items():
            with (
                self._db_lock,
                self._engine(run_id).connect() as run_conn,
                run_conn.begin(),
                self._engine(INDEX_SHARD_NAME).connect() as index_conn,
                index_conn.begin(),
            ):
                if all_planned(run_events) and self.supports_asset_checks:
                    self._store_planned(run_conn, index_conn, run_events)
                    continue
                self._batch.connections = {run_id: run_conn, INDEX_SHARD_NAME: index_conn}
                try:
                    for event in run_events:
                        self.store_event(event)
                finally:
                    self._batch.connections = {}

    def _store_planned(
        self, run_conn: Connection, index_conn: Connection, events: Sequence[EventLogEntry]
    ) -> None:
        """A new run's planned events: the event rows in the run shard and the index shard,
        then the index shard's asset and check rows (``orchestration.instance.planned_events``)."""
        rows = [self._event_to_row(event) for event in events]
        run_conn.execute(SqlEventLogStorageTable.insert(), rows)
        ids = insert_events_returning_ids(index_conn, rows)
        store_planned_rows(self, index_conn, sqlite_insert, events, rows, ids)

    def _store_asset_event(self, conn: Connection, event: EventLogEntry, event_id: int) -> None:
        """The stock asset-key row write as one upsert (``INSERT … ON CONFLICT DO UPDATE``, as
        dagster-postgres writes it) instead of an insert that fails with an IntegrityError for
        every asset already known, then an update: the same row, one statement, no exception."""
        asset_key = event.dagster_event.asset_key if event.dagster_event else None
        if asset_key is None:
            return
        values = self._get_asset_entry_values(
            event, event_id, self._has_asset_key_index_cols_on_connection(conn)
        )
        if not values:
            return
        conn.execute(
            sqlite_insert(AssetKeyTable)
            .values(asset_key=asset_key.to_string(), **values)
            .on_conflict_do_update(index_elements=[AssetKeyTable.c.asset_key], set_=values)
        )

    def wipe(self) -> None:
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
