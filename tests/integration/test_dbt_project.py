"""The dbt project against a real DuckDB file loaded by the real ingestion code.

dbt runs as a subprocess, exactly as the orchestration runs it, with its target and log
paths in a temporary directory so the repository's dbt_project/target stays untouched.
The warehouse is loaded once per module; the fault drills rebuild on top of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from orchestration.ingest.generators import (
    CONTACTS,
    CRM_TABLES,
    DEALS,
    FX_TABLES,
    IngestScale,
    generate_crm,
    generate_fx,
)
from orchestration.ingest.warehouse import WarehouseTarget, read_rows, read_scalar, replace_table

pytestmark = pytest.mark.integration

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT_TIMEOUT_SECONDS = 300
MIDDLE_MODEL = "int_deals__converted"
MIDDLE_DOWNSTREAM = (
    "int_deals__enriched",
    "fct_deals",
    "fct_deal_revenue_daily",
    "fct_revenue_by_owner",
    "fct_revenue_by_company",
    "fct_pipeline_by_stage",
)
MIDDLE_SIBLINGS = (
    "stg_crm__deals",
    "int_fx__rates_to_reporting",
    "int_companies__enriched",
    "dim_companies",
    "dim_contacts",
    "rpt_fx_coverage",
)


@dataclass(frozen=True)
class DbtWorkspace:
    """A loaded DuckDB file plus the scratch folder dbt writes its artifacts into."""

    root: Path
    duckdb_path: Path


@dataclass(frozen=True)
class DbtBuild:
    returncode: int
    output: str
    results: dict[str, dict]  # unique_id -> run_results entry

    def status(self, unique_id: str) -> str:
        return self.results[unique_id]["status"]


def _dbt_executable() -> str:
    beside_python = Path(sys.executable).parent / "dbt"
    found = str(beside_python) if beside_python.exists() else shutil.which("dbt")
    if found is None:
        pytest.fail("dbt is not installed; install the project with its test extras")
    return found


def _dbt_build(workspace: DbtWorkspace, dbt_vars: dict | None = None) -> DbtBuild:
    env = {
        **os.environ,
        "DBT_TARGET": "duckdb",
        "DUCKDB_PATH": str(workspace.duckdb_path),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    argv = [
        _dbt_executable(),
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(workspace.root / "target"),
        "--log-path",
        str(workspace.root / "logs"),
    ]
    if dbt_vars:
        argv += ["--vars", json.dumps(dbt_vars)]
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=DBT_TIMEOUT_SECONDS
    )
    run_results = json.loads((workspace.root / "target" / "run_results.json").read_text())
    results = {result["unique_id"]: result for result in run_results["results"]}
    return DbtBuild(completed.returncode, completed.stdout + completed.stderr, results)


def _model(name: str) -> str:
    return f"model.crm_revenue.{name}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> DbtWorkspace:
    root = tmp_path_factory.mktemp("dbt_project")
    duckdb_path = root / "warehouse" / "warehouse.duckdb"
    target = WarehouseTarget(kind="duckdb", duckdb_path=duckdb_path)
    as_of, loaded_at = date.today(), datetime.now(UTC)
    data = {
        **generate_fx(IngestScale(), as_of=as_of, loaded_at=loaded_at),
        **generate_crm(IngestScale(), as_of=as_of, loaded_at=loaded_at),
    }
    for table in (*FX_TABLES, *CRM_TABLES):
        assert replace_table(target, table, data[table.name]) == len(data[table.name])
    return DbtWorkspace(root=root, duckdb_path=duckdb_path)


@pytest.fixture(scope="module")
def clean_build(workspace: DbtWorkspace) -> DbtBuild:
    return _dbt_build(workspace)


def test_clean_build_succeeds_with_at_least_fifteen_models(clean_build: DbtBuild) -> None:
    assert clean_build.returncode == 0, clean_build.output[-3000:]
    statuses = {result["status"] for result in clean_build.results.values()}
    assert statuses <= {"success", "pass", "warn"}, clean_build.output[-3000:]
    models = [uid for uid in clean_build.results if uid.startswith("model.")]
    assert len(models) >= 15
    for layer_model in ("stg_crm__deals", MIDDLE_MODEL, "fct_deal_revenue_daily"):
        assert clean_build.status(_model(layer_model)) == "success"


def test_clean_build_runs_unit_singular_and_warn_tests(clean_build: DbtBuild) -> None:
    kinds = {uid.split(".")[0] for uid in clean_build.results}
    assert {"model", "test", "unit_test"} <= kinds
    assert "test.crm_revenue.assert_converted_amounts_are_not_negative" in clean_build.results


def test_clean_build_converts_every_deal_and_reports_filled_fx_days(
    workspace: DbtWorkspace, clean_build: DbtBuild
) -> None:
    assert clean_build.returncode == 0
    target = WarehouseTarget(kind="duckdb", duckdb_path=workspace.duckdb_path)
    unconverted = read_scalar(
        target, "select count(*) from main.fct_deals where amount_reporting is null"
    )
    assert unconverted == 0
    filled = read_scalar(
        target, "select count(*) from main.rpt_fx_coverage where coverage_status = 'filled'"
    )
    assert filled > 0


def test_model_fault_errors_the_model_skips_downstream_and_spares_siblings(
    workspace: DbtWorkspace, clean_build: DbtBuild
) -> None:
    message = "injected fault: it's 100% on purpose"
    build = _dbt_build(workspace, {"orchestration_model_faults": {MIDDLE_MODEL: message}})

    assert build.returncode == 1
    failed = build.results[_model(MIDDLE_MODEL)]
    assert failed["status"] == "error"
    assert message in failed["message"]
    for name in MIDDLE_DOWNSTREAM:
        assert build.status(_model(name)) == "skipped", name
    for name in MIDDLE_SIBLINGS:
        assert build.status(_model(name)) == "success", name
    errors = [uid for uid, result in build.results.items() if result["status"] == "error"]
    assert errors == [_model(MIDDLE_MODEL)]


def test_test_fault_fails_only_the_error_tests_of_that_model(
    workspace: DbtWorkspace, clean_build: DbtBuild
) -> None:
    faulted = "stg_crm__deals"
    build = _dbt_build(workspace, {"orchestration_test_faults": {faulted: "injected"}})

    assert build.returncode == 1
    manifest = json.loads((workspace.root / "target" / "manifest.json").read_text())
    attached = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "test" and node.get("attached_node") == _model(faulted)
    }
    error_tests = {
        uid for uid, node in attached.items() if node["config"]["severity"].upper() == "ERROR"
    }
    assert len(error_tests) >= 5
    assert set(attached) - error_tests, "the model should also carry a warn-severity test"
    for uid in error_tests:
        assert build.status(uid) == "fail", uid
    for uid in set(attached) - error_tests:
        assert build.status(uid) in ("pass", "warn"), uid
    failing = {uid for uid, result in build.results.items() if result["status"] == "fail"}
    assert failing == error_tests
    assert build.status(_model(faulted)) == "success"
    # dbt build skips what depends on a model whose tests fail; siblings still build.
    assert build.status(_model(MIDDLE_MODEL)) == "skipped"
    assert build.status(_model("dim_companies")) == "success"


def test_replace_table_waits_for_another_process_holding_the_duckdb_lock(
    tmp_path: Path,
) -> None:
    """Two ingestion steps may run at once; the second must wait, not fail."""
    duckdb_path = tmp_path / "locked.duckdb"
    hold_seconds = 2.0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time, duckdb
                connection = duckdb.connect({str(duckdb_path)!r})
                print("locked", flush=True)
                time.sleep({hold_seconds})
                connection.close()
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        target = WarehouseTarget(kind="duckdb", duckdb_path=duckdb_path)
        rows = generate_crm(
            IngestScale(deals=3), as_of=date(2024, 6, 30), loaded_at=datetime(2024, 6, 30)
        )["deals"]
        assert replace_table(target, DEALS, rows) == 3
        assert time.monotonic() - started >= hold_seconds / 2
        assert read_scalar(target, "select count(*) from raw_crm.deals") == 3
    finally:
        holder.wait(timeout=30)


def test_replace_table_round_trips_awkward_values_and_replaces_the_whole_table(
    tmp_path: Path,
) -> None:
    """Regression: the CSV load path must keep quotes, newlines, '' vs NULL and floats."""
    target = WarehouseTarget(kind="duckdb", duckdb_path=tmp_path / "nested" / "w.duckdb")
    rows = [
        (1, 1, 'a "quoted", name\non two lines', None, "", True, datetime(2024, 1, 1, 1, 2, 3)),
        (2, 1, "x,y", "e@x.example", "buyer", False, None),
    ]
    assert replace_table(target, CONTACTS, rows) == 2
    assert read_rows(target, "select * from raw_crm.contacts order by contact_id")[1] == rows
    assert replace_table(target, CONTACTS, rows[:1]) == 1
    assert read_scalar(target, "select count(*) from raw_crm.contacts") == 1
    assert replace_table(target, CONTACTS, []) == 0
    assert read_scalar(target, "select count(*) from raw_crm.contacts") == 0
    leftovers = read_scalar(
        target, "select count(*) from information_schema.tables where table_name like '%incoming'"
    )
    assert leftovers == 0
