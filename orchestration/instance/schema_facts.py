"""Schema facts a storage asks about for every event it writes or run it reads, asked once per
process.

Dagster's SQL event logs check the database's schema while they write: whether the asset check
table exists (``supports_asset_checks``, for every check event), whether the asset-key table has
its index columns (a column inspection, for every asset event), whether it has the status-cache
column (a column inspection, for every read of asset records: the run worker reads one record
per materialized parent to stamp data versions), whether a data migration has run. On SQLite
each ``has_table`` also builds and disposes an engine. At 1,000 models + 346 tests that was
about a fifth of the time spent writing a run's planned events, and the same again for each
materialization of the build (``benchmarks/RESULTS.md``, figure 8).

Dagster's SQL run storage does the same for every read of runs: a column inspection of the
runs table (``has_run_stats_index_cols``), ~2 ms against a local PostgreSQL, asked by each
run-status read of the webserver, the daemon and every run worker.

The answers can only change from "no" to "yes", by ``dagster instance migrate``, so only a
"yes" is kept: a storage that sees a missing table keeps asking, exactly as before, and a
migration done by another process is still seen. ``wipe`` forgets everything.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection


class KnownSchemaFacts:
    """Keeps each schema probe's "yes" (module docstring)."""

    _known_schema: set[tuple[str, str]]

    def _schema_fact(self, kind: str, name: str, probe: Callable[[], object]) -> bool:
        # Not set in __init__: the stock constructors already probe (creating the schema)
        # before a mixin's __init__ body could run.
        known = self.__dict__.setdefault("_known_schema", set())
        if (kind, name) in known:
            return True
        present = bool(probe())
        if present:
            known.add((kind, name))
        return present

    def wipe(self) -> None:
        self.__dict__.setdefault("_known_schema", set()).clear()
        super().wipe()  # type: ignore[misc]


class SchemaFactsCache(KnownSchemaFacts):
    """Mixin for a ``SqlEventLogStorage`` subclass: keeps each schema probe's "yes"."""

    def has_table(self, table_name: str) -> bool:
        stock = super().has_table
        return self._schema_fact("table", table_name, lambda: stock(table_name))

    def has_secondary_index(self, name: str) -> bool:
        stock = super().has_secondary_index
        return self._schema_fact("index", name, lambda: stock(name))

    def has_asset_key_col(self, column_name: str) -> bool:
        # Asked by every asset-record read: for the status-cache column, and the index columns.
        stock = super().has_asset_key_col
        return self._schema_fact("asset_key_col", column_name, lambda: stock(column_name))

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        stock = super()._has_asset_key_index_cols_on_connection
        return self._schema_fact("asset_key_index_cols", "", lambda: stock(conn))

    def enable_secondary_index(self, name: str) -> None:
        super().enable_secondary_index(name)
        self.__dict__.setdefault("_known_schema", set()).discard(("index", name))


class RunSchemaFactsCache(KnownSchemaFacts):
    """Mixin for a ``SqlRunStorage`` subclass: keeps each column and table probe's "yes"."""

    def has_run_stats_index_cols(self) -> bool:
        return self._schema_fact("runs", "start_time,end_time", super().has_run_stats_index_cols)

    def has_backfill_id_column(self) -> bool:
        return self._schema_fact("runs", "backfill_id", super().has_backfill_id_column)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._schema_fact(
            "bulk_actions", "selector_id", super().has_bulk_actions_selector_cols
        )

    def has_bulk_action_job_name_column(self) -> bool:
        return self._schema_fact(
            "bulk_actions", "job_name", super().has_bulk_action_job_name_column
        )

    def has_backfill_tags_table(self) -> bool:
        return self._schema_fact("table", "backfill_tags", super().has_backfill_tags_table)
