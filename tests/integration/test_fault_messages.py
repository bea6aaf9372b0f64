"""An injected fault's message is data, never SQL: the macros hand it to the warehouse
hex-encoded, so a dollar-quote tag, a quote, a ``--`` comment or a carriage return in it arrive
verbatim in the error instead of ending a literal or a comment (DuckDB and PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest

from orchestration.artifacts.store import open_store
from tests.conftest import Pipeline, statuses, stored_run_results, use_postgres_warehouse
from tests.dbt_graph import manifest, model_id
from tests.postgres import PostgresServer

pytestmark = pytest.mark.integration

MODEL = "stg_fx__exchange_rates"  # a model fault on the fx branch...
TESTED_MODEL = "stg_crm__companies"  # ...and a test fault on the crm branch: independent

# Once collapsed by the old one-pass strip into the closing dollar-quote tag of the PL/pgSQL
# block; the rest would then have been SQL.
MODEL_MESSAGE = (
    "injected: $orchestration_$orchestration_fault$fault$; drop table if exists x; "
    "it's -- not a comment\rselect 1"
)
# A `--` comment ends at a carriage return on both warehouses: the old test SQL put the
# message in a comment, so what followed `\r` ran as SQL.
TEST_MESSAGE = "injected test fault -- comment\rselect 1/0 as failures from (select 1) x --"


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, pipeline: Pipeline) -> str:
    """The test's warehouse: DuckDB (the pipeline's default) or a fresh PostgreSQL database."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        database = server.create_database("warehouse", user=f"dbt_{uuid.uuid4().hex[:8]}")
        use_postgres_warehouse(monkeypatch, database, pipeline.root)
    return request.param


def result_for(run_results: dict, prefix: str, contains: str) -> dict:
    return next(
        r
        for r in run_results["results"]
        if r["unique_id"].startswith(prefix) and contains in r["unique_id"]
    )


def test_a_fault_message_that_looks_like_sql_arrives_verbatim(
    pipeline: Pipeline, warehouse: str
) -> None:
    faults = pipeline.faults()
    faults.inject(MODEL, message=MODEL_MESSAGE)
    faults.inject(TESTED_MODEL, target="test", message=TEST_MESSAGE)

    failed = pipeline.run_job("daily_pipeline")

    assert not failed.success
    (results,) = stored_run_results(open_store(pipeline.artifacts_uri), failed.run_id)
    model = result_for(results, "model.", f".{MODEL}")
    assert model["status"] == "error"
    assert MODEL_MESSAGE in model["message"], model["message"]  # raised by the database
    assert "syntax error" not in model["message"].lower()
    # Every error-severity test of the faulted model failed as a test (status `fail`); a
    # message that became SQL would have made them `error` (a syntax error) instead.
    attached = {
        uid
        for uid, node in manifest()["nodes"].items()
        if node.get("attached_node") == model_id(TESTED_MODEL)
        and node.get("config", {}).get("severity", "ERROR").upper() == "ERROR"
    }
    tests = {r["unique_id"]: r["status"] for r in results["results"] if r["unique_id"] in attached}
    assert tests and set(tests.values()) == {"fail"}, tests
    assert statuses(results)[TESTED_MODEL] == "success"
