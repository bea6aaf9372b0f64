"""dagster-postgres's run and schedule storages, with a connection kept open between statements.

Stock, both open a new PostgreSQL connection (``NullPool``) for every statement outside the
webserver — a TCP connection, a backend process and a SCRAM password handshake: 10.7 ms per
``get_runs(limit=1)`` against a local server from Debian's binaries, 0.7 ms over a kept
connection (50 calls each). The daemon reads runs and ticks all the time; creating a run, a run
worker's status events and tags all go through the run storage.

``PooledPostgresRunStorage`` and ``PooledPostgresScheduleStorage`` run the same SQL, autocommit
as before, over the pool ``PooledPostgresEventLogStorage`` uses (``pooled_engine``): one
connection kept, a few more while threads need them, pinged before use and recycled hourly —
what dagster-postgres does for the webserver (``optimize_for_webserver``, which still replaces
this engine there). Each process then holds up to one idle connection per storage: count three
per process (webserver, daemon, code server, each run in flight) in ``max_connections``.

Forking: the warm run worker opens no instance before it forks (``warm_worker``), so no pooled
connection is ever shared by two processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy.engine import Engine

from orchestration.instance.schema_facts import RunSchemaFactsCache

POOL_SIZE = 1
MAX_OVERFLOW = 4
POOL_RECYCLE_SECONDS = 3600


def pooled_engine(postgres_url: str, token_provider: Any) -> Engine:
    """dagster-postgres's engine (same URL, token provider, autocommit) over a small pool."""
    return create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_SECONDS,
        pool_pre_ping=True,
    )


def storage_kwargs(config_value: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments dagster-postgres's storages take from their config."""
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class PooledEngine:
    """Mixin for a dagster-postgres storage: build it as stock, then swap its ``NullPool``
    engine for ``pooled_engine``; configured exactly as the stock storage is."""

    postgres_url: str
    _token_provider: Any
    _engine: Engine

    def __init__(self, postgres_url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(postgres_url, *args, **kwargs)  # type: ignore[call-arg]
        self._engine.dispose()
        self._engine = pooled_engine(self.postgres_url, self._token_provider)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> Any:
        return cls(inst_data=inst_data, **storage_kwargs(config_value))


class PooledPostgresRunStorage(RunSchemaFactsCache, PooledEngine, PostgresRunStorage):
    """``PostgresRunStorage`` over ``pooled_engine`` (same SQL, same isolation level), with
    schema probes answered once (``orchestration.instance.schema_facts``)."""


class PooledPostgresScheduleStorage(PooledEngine, PostgresScheduleStorage):
    """``PostgresScheduleStorage`` over ``pooled_engine`` (same SQL, same isolation level)."""
