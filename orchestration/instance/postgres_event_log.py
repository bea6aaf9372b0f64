"""dagster-postgres's event log, with a connection kept open between events.

``PostgresEventLogStorage`` opens a new PostgreSQL connection (``NullPool``) for every statement
it runs outside the webserver: a TCP connection, a backend process and a password handshake
(SCRAM hashes on both sides by design) for every event a run worker or the daemon writes, two
for an asset event. Measured here at ~30 ms per event against a local server with fsync off
(``benchmarks/RESULTS.md``, figure 8), it is most of what a full build through Dagster costs
over dbt alone on the production storage.

``PooledPostgresEventLogStorage`` runs the same SQL, autocommit as before, through a small pool
(one connection kept, a few more while threads need them, checked with a ping before use and
recycled hourly), exactly what dagster-postgres itself does for the webserver
(``optimize_for_webserver``; ``orchestration.instance.postgres_storage`` pools the run and
schedule storages the same way). The schema probes it makes for every check event are answered
once (``orchestration.instance.schema_facts``), and a new run's planned events are written in
bulk (``orchestration.instance.planned_events``). Each process holds one idle connection to the
event log (three with the pooled run and schedule storages): size PostgreSQL's
``max_connections`` for webserver + daemon + code server + each run in flight.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster._core.events.log import EventLogEntry
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from sqlalchemy.dialects.postgresql import insert as postgresql_insert

from orchestration.instance.planned_events import (
    all_planned,
    insert_events_returning_ids,
    store_planned_rows,
)
from orchestration.instance.postgres_storage import PooledEngine
from orchestration.instance.schema_facts import SchemaFactsCache


class PooledPostgresEventLogStorage(SchemaFactsCache, PooledEngine, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` over a pooled engine (same SQL, same isolation level), with
    schema probes answered once (``orchestration.instance.schema_facts``)."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A new run's planned events in one transaction, one multi-row statement per table
        (``orchestration.instance.planned_events``); other batches as dagster-postgres
        stores them. Not sent for them: the per-event ``NOTIFY`` dagster-postgres keeps for
        older Dagster versions (this one no longer listens)."""
        if not (all_planned(events) and self.supports_asset_checks):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        with self.index_transaction() as conn:
            ids = insert_events_returning_ids(conn, rows)
            store_planned_rows(self, conn, postgresql_insert, events, rows, ids)
