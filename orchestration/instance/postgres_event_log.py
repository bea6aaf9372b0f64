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
(``optimize_for_webserver``). The schema probes it makes for every check event are answered
once (``orchestration.instance.schema_facts``), and a new run's planned events are written in
bulk (``orchestration.instance.planned_events``). Each process holds one idle connection to the
event log: size PostgreSQL's ``max_connections`` for webserver + daemon + code server + one
per run in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster._core.events.log import EventLogEntry
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert

from orchestration.instance.planned_events import (
    all_planned,
    insert_events_returning_ids,
    store_planned_rows,
)
from orchestration.instance.schema_facts import SchemaFactsCache

POOL_SIZE = 1
MAX_OVERFLOW = 4
POOL_RECYCLE_SECONDS = 3600


class PooledPostgresEventLogStorage(SchemaFactsCache, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` over a pooled engine (same SQL, same isolation level), with
    schema probes answered once (``orchestration.instance.schema_facts``)."""

    def __init__(self, postgres_url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(postgres_url, *args, **kwargs)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_recycle=POOL_RECYCLE_SECONDS,
            pool_pre_ping=True,
        )

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

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
            store_planned_rows(self, conn, postgresql_insert, events, ids)
