"""The embedded instance's defaults (``orchestration/instance/``) against Dagster's stock ones.

``EmbeddedSqliteEventLogStorage`` must store exactly what the stock SQLite event log stores —
the same events, asset records, check executions and run-status events — whether Dagster hands
it events one by one or in batches (``DAGSTER_EVENT_BATCH_SIZE``). Both storages are real, side
by side, fed the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunStatusChangeRecordsFilter,
    define_asset_job,
    multi_asset,
)
from dagster._core.events import DagsterEvent, StepMaterializationData
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from orchestration.instance.config import (
    default_instance_yaml,
    ensure_instance_config,
    event_log_storage_yaml,
)
from orchestration.instance.postgres_event_log import PooledPostgresEventLogStorage
from orchestration.instance.sqlite_event_log import EmbeddedSqliteEventLogStorage

ASSETS = 30


def test_the_default_config_is_written_once_and_never_over_a_users_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert ensure_instance_config(home)
    written = (home / "dagster.yaml").read_text()
    assert written == default_instance_yaml(home)
    assert not ensure_instance_config(home)  # already there: left alone
    (home / "dagster.yaml").write_text("")  # what `touch` in earlier versions left
    assert ensure_instance_config(home)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert not ensure_instance_config(home)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_the_default_config_loads_the_embedded_event_log_and_a_fast_queue(tmp_path: Path) -> None:
    ensure_instance_config(tmp_path)
    config = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    assert config["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, EmbeddedSqliteEventLogStorage)
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]


def _job() -> Any:
    specs = [AssetSpec(f"m{i:03d}", deps=[f"m{i - 1:03d}"] if i else []) for i in range(ASSETS)]
    checks = [AssetCheckSpec("not_null", asset=f"m{i:03d}", blocking=True) for i in range(0, 10)]

    @multi_asset(specs=specs, check_specs=checks, can_subset=True, name="dbt_models")
    def models():  # noqa: ANN202 -- never executed
        return None

    return Definitions(assets=[models], jobs=[define_asset_job("j")]).resolve_job_def("j")


def _event(job: Any, kind: DagsterEventType, data: Any = None) -> DagsterEvent:
    return DagsterEvent(
        event_type_value=kind.value,
        job_name=job.name,
        step_key="dbt_models",
        event_specific_data=data,
    )


def _feed(instance: DagsterInstance, job: Any) -> str:
    """A run that plans everything, materializes half, fails a check, and fails."""
    run = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)
    instance.report_dagster_event(_event(job, DagsterEventType.RUN_START), run_id=run.run_id)
    for i in range(ASSETS // 2):
        mat = StepMaterializationData(AssetMaterialization(AssetKey(f"m{i:03d}")))
        instance.report_dagster_event(
            _event(job, DagsterEventType.ASSET_MATERIALIZATION, mat), run_id=run.run_id
        )
    evaluation = AssetCheckEvaluation(
        asset_key=AssetKey("m000"),
        check_name="not_null",
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        blocking=True,
    )
    instance.report_dagster_event(
        _event(job, DagsterEventType.ASSET_CHECK_EVALUATION, evaluation), run_id=run.run_id
    )
    instance.report_run_failed(instance.get_run_by_id(run.run_id))
    return run.run_id


def _what_is_stored(instance: DagsterInstance, job: Any, run_id: str) -> dict[str, Any]:
    keys = [AssetKey(f"m{i:03d}") for i in range(ASSETS)]
    records = {
        r.asset_entry.asset_key.to_user_string(): (
            r.asset_entry.last_run_id == run_id,
            r.asset_entry.last_materialization_record is not None,
        )
        for r in instance.get_asset_records(keys)
    }
    storage = instance.event_log_storage
    checks = storage.get_latest_asset_check_execution_by_key(
        list(job.asset_layer.asset_graph.asset_check_keys)
    )
    failures = storage.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(DagsterEventType.RUN_FAILURE), limit=10
    ).records
    return {
        "events": sorted(
            (entry.dagster_event_type.value, str(entry.dagster_event.asset_key))
            for entry in instance.all_logs(run_id)
            if entry.dagster_event is not None
        ),
        "records": records,
        "checks": sorted(
            (
                k.to_user_string(),
                v.status.value,
                v.event.dagster_event_type.value,
                v.run_id == run_id,
            )
            for k, v in checks.items()
        ),
        "planned_in": {
            key.to_user_string(): info is not None and info.run_id == run_id
            for key in keys
            for info in [storage.get_latest_planned_materialization_info(key)]
        },
        "failed_runs": [record.event_log_entry.run_id == run_id for record in failures],
        "latest_id_known": (storage.get_maximum_record_id() or 0) > 0,
    }


@pytest.mark.parametrize("batch", ["0", "1000"], ids=["one by one", "batched"])
def test_the_embedded_event_log_stores_what_the_stock_one_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: str
) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
    job = _job()
    found = {}
    for name, extra in (("stock", ""), ("embedded", None)):
        home = tmp_path / name
        home.mkdir()
        body = event_log_storage_yaml(home) if extra is None else extra
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + body)
        with DagsterInstance.from_config(str(home)) as instance:
            run_id = _feed(instance, job)
            found[name] = _what_is_stored(instance, job, run_id)
    assert found["embedded"] == found["stock"]
    # …and what is stored is the run: every asset planned, half materialized, one check failed.
    stored = found["embedded"]
    assert stored["records"]["m000"] == (True, True)
    assert stored["records"][f"m{ASSETS - 1:03d}"] == (True, False)
    assert set(stored["planned_in"].values()) == {True}
    statuses = {key: status for key, status, *_ in stored["checks"]}
    assert statuses.pop("m000:not_null") == "FAILED"
    assert set(statuses.values()) == {"PLANNED"} and len(statuses) == 9
    assert stored["failed_runs"] == [True]


def test_schema_probes_are_made_once_and_a_missing_table_is_probed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the stock log probed for the check table (building an engine for it) with
    every check event and inspected the asset-key columns with every asset event."""
    probes: list[str] = []
    stock_has_table = SqliteEventLogStorage.has_table

    def counting_has_table(self: SqliteEventLogStorage, table_name: str) -> bool:
        probes.append(table_name)
        return stock_has_table(self, table_name)

    monkeypatch.setattr(SqliteEventLogStorage, "has_table", counting_has_table)
    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n" + event_log_storage_yaml(tmp_path)
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        job = _job()
        _feed(instance, job)  # 10 planned checks + 1 evaluation
        _feed(instance, job)
        assert probes.count("asset_check_executions") == 1
        storage = instance.event_log_storage
        assert not storage.has_table("no_such_table")
        assert not storage.has_table("no_such_table")
        assert probes.count("no_such_table") == 2


def test_reading_asset_records_inspects_the_asset_key_columns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: every ``get_asset_records`` (one per materialized parent, for data versions)
    inspected the asset-key table's columns twice."""
    inspected: list[str] = []
    stock = SqlEventLogStorage._has_asset_key_col_on_connection

    def counting(self: SqlEventLogStorage, conn: Any, column_name: str) -> bool:
        inspected.append(column_name)
        return stock(self, conn, column_name)

    monkeypatch.setattr(SqlEventLogStorage, "_has_asset_key_col_on_connection", counting)
    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n" + event_log_storage_yaml(tmp_path)
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        _feed(instance, _job())
        inspected.clear()
        keys = [AssetKey("m000"), AssetKey("m001")]
        for key in keys * 3:
            assert instance.get_asset_records([key])
        assert inspected.count("cached_status_data") <= 1
        assert inspected.count("last_materialization_timestamp") <= 1


def test_a_process_opening_existing_shards_does_not_load_the_migration_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: every shard a process opened (the index, each run it read or wrote) was
    checked against Dagster's ~90 migration scripts, ~50 ms each, in every run worker. A new
    shard is still created and stamped the stock way."""
    from alembic.runtime.migration import MigrationContext
    from dagster._core.storage.event_log.sqlite import sqlite_event_log as stock_module

    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n" + event_log_storage_yaml(tmp_path)
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        run_id = _feed(instance, _job())
    checks: list[str] = []
    stock_check = stock_module.check_alembic_revision

    def counting(config: Any, conn: Any) -> Any:
        checks.append(str(conn.engine.url))
        return stock_check(config, conn)

    monkeypatch.setattr(stock_module, "check_alembic_revision", counting)
    with DagsterInstance.from_config(str(tmp_path)) as instance:  # a new process's instance
        assert instance.all_logs(run_id)
        assert checks == []
        new_run = instance.create_run_for_job(_job())
        instance.report_engine_event("started", new_run)
        assert len(checks) == 1 and new_run.run_id in checks[0]
        storage = instance.event_log_storage
        with storage.run_connection(new_run.run_id) as conn:
            assert MigrationContext.configure(conn).get_current_revision()


@pytest.mark.postgres
def test_the_pooled_postgres_event_log_stores_what_the_stock_one_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_server: Any
) -> None:
    """The same run on dagster-postgres's own event log and on ``PooledPostgresEventLogStorage``
    (schema probes once, planned events in bulk), batched as the Makefile exports it."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    job = _job()
    found = {}
    for name, pooled in (("stock", False), ("pooled", True)):
        database = postgres_server.create_database(name)
        password_env = f"TEST_PG_PASSWORD_{name.upper()}"
        monkeypatch.setenv(password_env, database.password)
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text(
            "telemetry:\n  enabled: false\n"
            + database.dagster_storage_yaml(password_env, pooled=pooled)
        )
        with DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage) is pooled
            run_id = _feed(instance, job)
            found[name] = _what_is_stored(instance, job, run_id)
    assert found["pooled"] == found["stock"]
    assert set(found["pooled"]["planned_in"].values()) == {True}


@pytest.mark.postgres
def test_a_new_runs_planned_events_reach_postgres_in_a_few_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_server: Any
) -> None:
    """Creating a run writes one planned event per asset and check, and for each an asset-key
    upsert or a PLANNED check row (``orchestration.instance.planned_events``). Each table's
    rows go to the server as multi-row statements: a driver-level executemany (one round trip
    per row with psycopg2) would cost a 1,000-asset *From failure* 0.3 s."""
    from sqlalchemy import event as sqlalchemy_event
    from sqlalchemy.engine.interfaces import ExecuteStyle

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    database = postgres_server.create_database("planned")
    monkeypatch.setenv("TEST_PG_PASSWORD_PLANNED", database.password)
    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        + database.dagster_storage_yaml("TEST_PG_PASSWORD_PLANNED", pooled=True)
    )
    job = _job()
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)  # schema probed
        round_trips: list[tuple[str, int]] = []

        def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):  # noqa: ANN202, PLR0913
            # The driver's executemany runs one statement per parameter set.
            each = context.execute_style == ExecuteStyle.EXECUTEMANY
            round_trips.append((statement.split("(")[0].strip(), len(params) if each else 1))

        engine = instance.event_log_storage._engine  # noqa: SLF001
        sqlalchemy_event.listen(engine, "before_cursor_execute", count)
        run = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)
        sqlalchemy_event.remove(engine, "before_cursor_execute", count)
        planned = instance.all_logs(run.run_id)
    assert len(planned) == ASSETS + 10  # every asset and check planned, as stock Dagster does
    # The event rows, the asset-key upsert and the check rows: one statement each.
    assert sum(rows for _, rows in round_trips) <= 5, round_trips
