"""Write raw tables into the warehouse dbt reads from (DuckDB or PostgreSQL).

Each call replaces one whole table inside one transaction, so a reader (dbt, a report)
sees either the previous load or the new one, never a half-written table; that is what
makes re-running a failed ingestion step safe.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orchestration.errors import ConfigurationError, OrchestrationError
from orchestration.ingest.generators import RawTable

if TYPE_CHECKING:
    import duckdb

# DuckDB lets one process write a database file at a time; ingestion steps running in
# parallel processes (and dbt itself) take turns by retrying for this long.
DUCKDB_LOCK_TIMEOUT_SECONDS = 60.0
DUCKDB_LOCK_FIRST_BACKOFF_SECONDS = 0.1
DUCKDB_LOCK_MAX_BACKOFF_SECONDS = 2.0
CSV_NULL_MARKER = r"\N"
POSTGRES_PAGE_ROWS = 1000
_DUCKDB_LOCK_MARKERS = ("Could not set lock", "Conflicting lock")


class WarehouseLockedError(OrchestrationError):
    """The DuckDB file stayed locked by another process for the whole timeout."""


@dataclass(frozen=True)
class WarehouseTarget:
    """Where raw tables go: a DuckDB file or a PostgreSQL database."""

    kind: Literal["duckdb", "postgres"]
    duckdb_path: Path | None = None
    postgres_dsn: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "duckdb" and self.duckdb_path is None:
            raise ConfigurationError("A duckdb WarehouseTarget needs duckdb_path; set DUCKDB_PATH")
        if self.kind == "postgres" and not self.postgres_dsn:
            raise ConfigurationError(
                "A postgres WarehouseTarget needs postgres_dsn; set the DBT_POSTGRES_* variables"
            )
        if self.kind not in ("duckdb", "postgres"):
            raise ConfigurationError(
                f"Unknown warehouse kind {self.kind!r}; use 'duckdb' or 'postgres'"
            )


def replace_table(target: WarehouseTarget, table: RawTable, rows: Sequence[tuple]) -> int:
    """Replace `table` with `rows` atomically; return the number of rows written."""
    if target.kind == "duckdb":
        return _replace_duckdb(_duckdb_path(target), table, rows)
    return _replace_postgres(_postgres_dsn(target), table, rows)


def read_rows(target: WarehouseTarget, sql: str) -> tuple[list[str], list[tuple]]:
    """Column names and all rows of `sql`, for reports and tests (not for bulk reads)."""
    if target.kind == "duckdb":
        with _duckdb_connection(_duckdb_path(target), read_only=True) as connection:
            cursor = connection.execute(sql)
            columns = [column[0] for column in cursor.description or []]
            return columns, [tuple(row) for row in cursor.fetchall()]
    import psycopg2

    connection = psycopg2.connect(_postgres_dsn(target))
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            columns = [column[0] for column in cursor.description or []]
            return columns, [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def read_scalar(target: WarehouseTarget, sql: str) -> object:
    """First column of the first row of `sql` (None when there is no row)."""
    _, rows = read_rows(target, sql)
    return rows[0][0] if rows else None


def _duckdb_path(target: WarehouseTarget) -> Path:
    assert target.duckdb_path is not None  # checked in WarehouseTarget.__post_init__
    return Path(target.duckdb_path)


def _postgres_dsn(target: WarehouseTarget) -> str:
    assert target.postgres_dsn is not None  # checked in WarehouseTarget.__post_init__
    return target.postgres_dsn


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _column_ddl(table: RawTable) -> str:
    return ", ".join(f"{_quote(name)} {sql_type}" for name, sql_type in table.columns)


def _is_duckdb_lock_error(error: Exception) -> bool:
    message = str(error)
    return any(marker in message for marker in _DUCKDB_LOCK_MARKERS)


@contextmanager
def _duckdb_connection(
    path: Path, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path`, waiting with backoff while another process holds the file lock."""
    import duckdb

    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + DUCKDB_LOCK_TIMEOUT_SECONDS
    backoff = DUCKDB_LOCK_FIRST_BACKOFF_SECONDS
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as error:
            if not _is_duckdb_lock_error(error):
                raise
            if time.monotonic() + backoff > deadline:
                raise WarehouseLockedError(
                    f"DuckDB file {path} stayed locked by another process for "
                    f"{DUCKDB_LOCK_TIMEOUT_SECONDS:.0f} s; wait for the other writer (dbt or "
                    f"another ingestion step) to finish, then retry. Last error: {error}"
                ) from error
            time.sleep(backoff)
            backoff = min(backoff * 2, DUCKDB_LOCK_MAX_BACKOFF_SECONDS)
    try:
        yield connection
    finally:
        connection.close()


def _replace_duckdb(path: Path, table: RawTable, rows: Sequence[tuple]) -> int:
    """Load into a staging table, then swap it in: DDL is transactional in DuckDB.

    Rows travel through a temporary CSV file because DuckDB's parameterised inserts run
    at a few thousand rows per second, while `read_csv` loads 50k rows in well under one.
    """
    schema, staging = _quote(table.schema), _quote(f"{table.name}__incoming")
    final = _quote(table.name)
    column_types = ", ".join(f"'{name}': '{sql_type}'" for name, sql_type in table.columns)
    with tempfile.TemporaryDirectory(prefix="replace_table_") as scratch:
        csv_path = Path(scratch) / f"{table.name}.csv"
        _write_csv(csv_path, rows)
        with _duckdb_connection(path) as connection:
            connection.execute("begin transaction")
            try:
                connection.execute(f"create schema if not exists {schema}")
                connection.execute(f"drop table if exists {schema}.{staging}")
                connection.execute(f"create table {schema}.{staging} ({_column_ddl(table)})")
                if rows:  # read_csv rejects an empty file
                    connection.execute(
                        f"insert into {schema}.{staging} select * from read_csv(?, "
                        f"auto_detect = false, header = false, delim = ',', quote = '\"', "
                        f"escape = '\"', new_line = '\\n', nullstr = '{CSV_NULL_MARKER}', "
                        f"columns = {{{column_types}}})",
                        [str(csv_path)],
                    )
                connection.execute(f"drop table if exists {schema}.{final}")
                connection.execute(f"alter table {schema}.{staging} rename to {final}")
                connection.execute("commit")
            except BaseException:
                connection.execute("rollback")
                raise
    return len(rows)


def _write_csv(path: Path, rows: Sequence[tuple]) -> None:
    """Rows as CSV that DuckDB reads back losslessly (floats via repr, NULL as a marker)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow([_csv_value(value) for value in row])


def _naive_utc(value: object) -> object:
    """Aware datetimes become naive UTC: the raw columns are `timestamp` without zone."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _csv_value(value: object) -> object:
    value = _naive_utc(value)
    if value is None:
        return CSV_NULL_MARKER
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value == CSV_NULL_MARKER:
        raise ValueError(f"The string {CSV_NULL_MARKER!r} is reserved as the NULL marker")
    return value


def _replace_postgres(dsn: str, table: RawTable, rows: Sequence[tuple]) -> int:
    """Truncate and reload in one transaction.

    PostgreSQL, unlike DuckDB, records that dbt's staging views depend on the raw table,
    so drop-and-rename would need CASCADE and silently drop those views. TRUNCATE is
    transactional there: readers wait for the commit and then see the new rows. Only when
    the existing columns differ from `table.columns` is the table recreated (with
    CASCADE: the next `dbt build` recreates the staging views).
    """
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extras import execute_values

    schema, name = sql.Identifier(table.schema), sql.Identifier(table.name)
    qualified = sql.SQL("{}.{}").format(schema, name)
    columns_ddl = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(sql_type))
        for column, sql_type in table.columns
    )
    connection = psycopg2.connect(dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("create schema if not exists {}").format(schema))
            cursor.execute(
                "select column_name from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                (table.schema, table.name),
            )
            existing = [row[0] for row in cursor.fetchall()]
            wanted = [column for column, _ in table.columns]
            if existing and existing != wanted:
                cursor.execute(sql.SQL("drop table {} cascade").format(qualified))
                existing = []
            if existing:
                cursor.execute(sql.SQL("truncate table {}").format(qualified))
            else:
                cursor.execute(sql.SQL("create table {} ({})").format(qualified, columns_ddl))
            insert = sql.SQL("insert into {} ({}) values %s").format(
                qualified, sql.SQL(", ").join(sql.Identifier(column) for column in wanted)
            )
            execute_values(
                cursor,
                insert.as_string(cursor),
                [tuple(_naive_utc(value) for value in row) for row in rows],
                page_size=POSTGRES_PAGE_ROWS,
            )
    finally:
        connection.close()
    return len(rows)
