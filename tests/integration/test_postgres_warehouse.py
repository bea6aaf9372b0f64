"""dbt on PostgreSQL: the ``postgres`` target builds the same project end to end — ingestion
writes the raw tables through psycopg2, dbt builds on a real server — and fault injection
raises a genuine database error there too (the ``postgres__orchestration_raise_error`` macro).
"""

from __future__ import annotations

import json
import uuid

import pytest

from orchestration.artifacts.store import open_store, read_run_index
from orchestration.cli.main import main as cli_main
from tests.conftest import Pipeline, statuses, stored_run_results, use_postgres_warehouse
from tests.dbt_graph import all_models, model_descendants
from tests.postgres import PostgresDatabase, PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

MIDDLE_MODEL = "int_deals__converted"


@pytest.fixture
def warehouse(
    pipeline: Pipeline, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> PostgresDatabase:
    """A fresh warehouse database owned by its own login role, as dbt's target."""
    database = postgres_server.create_database("warehouse", user=f"dbt_{uuid.uuid4().hex[:8]}")
    use_postgres_warehouse(monkeypatch, database, pipeline.root)
    return database


def query(database: PostgresDatabase, sql: str) -> list[tuple]:
    import psycopg2

    connection = psycopg2.connect(database.dsn())
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


def result_message(run_results: dict, model: str) -> str:
    return next(
        r.get("message") or ""
        for r in run_results["results"]
        if r["unique_id"].startswith("model.") and r["unique_id"].split(".")[-1] == model
    )


def test_the_postgres_target_builds_the_project_and_an_injected_fault_is_a_database_error(
    pipeline: Pipeline, warehouse: PostgresDatabase
) -> None:
    assert cli_main(["faults", "inject", MIDDLE_MODEL, "--times", "1"]) == 0
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success

    # Ingestion wrote the raw tables into PostgreSQL before dbt ran.
    assert query(warehouse, "select count(*) from raw_crm.deals")[0][0] > 0
    assert query(warehouse, "select count(*) from raw_fx.exchange_rates")[0][0] > 0

    store = open_store(pipeline.artifacts_uri)
    (results,) = stored_run_results(store, failed.run_id)
    status = statuses(results)
    below = model_descendants(MIDDLE_MODEL)
    assert status[MIDDLE_MODEL] == "error"
    assert {status[m] for m in below} == {"skipped"}
    assert {status[m] for m in all_models() - below - {MIDDLE_MODEL}} == {"success"}
    message = result_message(results, MIDDLE_MODEL)
    # Raised by the server (RAISE EXCEPTION in the model's pre-hook), not a compilation error.
    assert "Database Error" in message, message
    assert "injected transient fault" in message, message
    assert "Compilation Error" not in message

    # The transient fault counted down on the real failure; the next run heals.
    assert pipeline.faults().list() == []
    healed = pipeline.run_job("daily_pipeline")
    assert healed.success
    (rebuilt,) = stored_run_results(store, healed.run_id)
    assert statuses(rebuilt) == dict.fromkeys(all_models(), "success")
    assert query(warehouse, "select count(*) from analytics.fct_deals")[0][0] > 0

    # The manifest was parsed for the postgres target (the report asset reads its schema).
    label = read_run_index(store, healed.run_id).invocations[-1].label
    manifest = json.loads(store.get_bytes(f"runs/{healed.run_id}/{label}/manifest.json"))
    assert manifest["metadata"]["adapter_type"] == "postgres"
