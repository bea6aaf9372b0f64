"""Shared fixtures: real dbt on DuckDB in tmp_path, a real Dagster instance (SQLite, or
PostgreSQL for the production-storage runs), moto over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestration.instance.config import event_log_storage_yaml
from orchestration.settings import REPO_ROOT, load_settings
from tests.postgres import (
    PostgresDatabase,
    PostgresServer,
    PostgresUnavailableError,
    open_server,
    stop_server,
)

STORAGE_PASSWORD_ENV = "DAGSTER_PG_PASSWORD"
"""Where a PostgreSQL-backed test instance reads its password (as ``deploy/dagster.yaml``)."""

BOTH_STORAGES = pytest.mark.parametrize(
    "pipeline", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
"""Run a test on a SQLite and on a PostgreSQL Dagster instance (``pipeline`` fixture)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def manifest_ready() -> Path:
    """Parse the repo's dbt project once per session (target/manifest.json)."""
    from orchestration.dbt.project import prepare_manifest

    return prepare_manifest(load_settings({}))


@dataclass
class Pipeline:
    """One isolated pipeline environment: warehouse, artifacts, faults, DAGSTER_HOME."""

    root: Path
    duckdb_path: Path
    artifacts_uri: str
    faults_file: Path
    dagster_home: Path
    storage: str = "sqlite"
    database: PostgresDatabase | None = None
    """The Dagster storage database when ``storage == "postgres"``."""

    def instance(self) -> Any:
        from dagster import DagsterInstance

        return DagsterInstance.from_config(str(self.dagster_home))

    def run_job(
        self, name: str = "daily_pipeline", run_config: Mapping[str, Any] | None = None
    ) -> Any:
        from dagster import execute_job
        from dagster._core.definitions.reconstruct import build_reconstructable_job

        job = build_reconstructable_job(
            "orchestration.definitions", "job_by_name", reconstructable_args=(name,)
        )
        with self.instance() as instance:
            return execute_job(
                job, instance=instance, run_config=dict(run_config or {}), raise_on_error=False
            )

    def reexecute(
        self, parent_run_id: str, *, from_failure: bool = True, job: str = "daily_pipeline"
    ) -> Any:
        """*From failure* as the UI launches it (failed steps, tagged
        ``dagster/is_resume_retry``), or *All steps*, of ``job``."""
        from dagster import ReexecutionOptions, execute_job
        from dagster._core.definitions.reconstruct import build_reconstructable_job

        job_def = build_reconstructable_job(
            "orchestration.definitions", "job_by_name", reconstructable_args=(job,)
        )
        with self.instance() as instance:
            options = (
                ReexecutionOptions.from_failure(parent_run_id, instance)
                if from_failure
                else ReexecutionOptions(parent_run_id=parent_run_id)
            )
            return execute_job(
                job_def,
                instance=instance,
                reexecution_options=options,
                tags={"dagster/is_resume_retry": "true"} if from_failure else None,
                raise_on_error=False,
            )

    def faults(self) -> Any:
        from orchestration.faults.store import FaultStore

        return FaultStore(self.faults_file)

    def query(self, sql: str) -> list[tuple]:
        import duckdb

        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.execute(sql).fetchall()


def reset_caches() -> None:
    """Definitions depend on the environment; drop every cached copy between tests."""
    from dagster._core.definitions.reconstruct import ReconstructableJob

    from orchestration.definitions import build_definitions

    build_definitions.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    ReconstructableJob.get_definition.cache_clear()


def make_pipeline(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    storage: str = "sqlite",
    postgres: PostgresServer | None = None,
) -> Pipeline:
    """An isolated environment under ``root``, exported through ``monkeypatch``.

    ``storage="postgres"`` keeps the Dagster instance (runs, event log, schedules) in a fresh
    database on ``postgres``, the way ``deploy/dagster.yaml`` does in production; the warehouse
    stays DuckDB either way.
    """
    home = root / "dagster_home"
    home.mkdir()
    config = (
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: "
        "dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    database: PostgresDatabase | None = None
    if storage == "postgres":
        if postgres is None:
            raise ValueError("storage='postgres' needs the postgres_server fixture's server")
        database = postgres.create_database("dagster")
        config += database.dagster_storage_yaml(STORAGE_PASSWORD_ENV)
        monkeypatch.setenv(STORAGE_PASSWORD_ENV, database.password)
    elif storage == "sqlite":  # the embedded instance's own event log (make run / make dev)
        config += event_log_storage_yaml(home)
    else:
        raise ValueError(f"storage must be 'sqlite' or 'postgres', not {storage!r}")
    (home / "dagster.yaml").write_text(config)
    env = Pipeline(
        root=root,
        duckdb_path=root / "warehouse.duckdb",
        artifacts_uri=str(root / "artifacts"),
        faults_file=root / "faults.json",
        dagster_home=home,
        storage=storage,
        database=database,
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DUCKDB_PATH", str(env.duckdb_path))
    monkeypatch.setenv("ORCHESTRATION_ARTIFACTS_URI", env.artifacts_uri)
    monkeypatch.setenv("ORCHESTRATION_FAULTS_FILE", str(env.faults_file))
    # Fault injection is off by default (production); the tests make runs fail with it.
    monkeypatch.setenv("ORCHESTRATION_FAULTS_ENABLED", "1")
    monkeypatch.setenv("ORCHESTRATION_UPLOAD_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("ORCHESTRATION_UPLOAD_ATTEMPTS", "2")
    # `dbt source freshness` costs a dbt start-up (~5 s) per run; the test that checks it
    # turns it back on.
    monkeypatch.setenv("ORCHESTRATION_SOURCE_FRESHNESS", "0")
    # Each microbatch is one query and a few dbt events (~50 ms); 120 daily batches add ~6 s
    # to every daily_pipeline run. A week keeps the model real and the suite fast; the
    # batch-recovery proofs set the full 120-day window themselves.
    monkeypatch.setenv("ORCHESTRATION_MICROBATCH_DAYS", "7")
    monkeypatch.delenv("DBT_PROJECT_DIR", raising=False)
    monkeypatch.delenv("DBT_TARGET", raising=False)
    reset_caches()
    return env


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use (``tests/postgres.py``)."""
    problem: str | None = None
    try:
        server = open_server()
    except PostgresUnavailableError as error:
        problem = str(error)
    if problem is not None:
        # Not a skip: CI installs the server, and a skipped storage suite would pass silently.
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> PostgresDatabase:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    manifest_ready: Path,
) -> Iterator[Pipeline]:
    """SQLite storage unless parametrized indirectly with "postgres" (``BOTH_STORAGES``)."""
    storage = getattr(request, "param", "sqlite")
    server = request.getfixturevalue("postgres_server") if storage == "postgres" else None
    yield make_pipeline(tmp_path, monkeypatch, storage=storage, postgres=server)
    reset_caches()


def use_postgres_warehouse(
    monkeypatch: pytest.MonkeyPatch, database: PostgresDatabase, root: Path
) -> Path:
    """Point dbt (``DBT_TARGET=postgres``) and the ingestion at ``database`` through the
    ``DBT_POSTGRES_*`` variables our profiles.yml reads; return the project copy in use.

    The project is copied under ``root`` (without ``target/``) so that its manifest is parsed
    for the postgres target, as ``python -m orchestration prepare`` does in production: the
    manifest records each model's schema for the target it was parsed with, and the session's
    shared manifest is DuckDB's.
    """
    project = root / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs")
    )
    monkeypatch.setenv("DBT_PROJECT_DIR", str(project))
    monkeypatch.setenv("DBT_TARGET", "postgres")
    monkeypatch.setenv("DBT_POSTGRES_HOST", database.host)
    monkeypatch.setenv("DBT_POSTGRES_PORT", str(database.port))
    monkeypatch.setenv("DBT_POSTGRES_USER", database.user)
    monkeypatch.setenv("DBT_POSTGRES_PASSWORD", database.password)
    monkeypatch.setenv("DBT_POSTGRES_DBNAME", database.name)
    monkeypatch.setenv("DBT_POSTGRES_SCHEMA", "analytics")
    reset_caches()
    return project


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, reached over real HTTP by boto3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point boto3 at moto's server and create a fresh bucket; yields the bucket name."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    yield bucket


def stored_run_results(store: Any, run_id: str) -> list[dict[str, Any]]:
    """Every stored run_results.json of ``run_id`` (parsed), oldest first."""
    from orchestration.artifacts.store import find_run_results_keys

    return [json.loads(store.get_bytes(key)) for key in find_run_results_keys(store, run_id)]


def statuses(run_results: Mapping[str, Any], prefix: str = "model.") -> dict[str, str]:
    """model name → dbt status in one run_results.json."""
    return {
        r["unique_id"].split(".")[-1]: r["status"]
        for r in run_results["results"]
        if r["unique_id"].startswith(prefix)
    }


@pytest.fixture(autouse=True)
def _no_stray_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the developer's .dagster_home from tests."""
    if os.environ.get("DAGSTER_HOME", "").startswith(str(REPO_ROOT)):
        monkeypatch.delenv("DAGSTER_HOME")


def plan_json(run_id: str) -> dict[str, Any]:
    """``python -m orchestration plan --run-id ID --json``, parsed."""
    import io
    from contextlib import redirect_stdout

    from orchestration.cli.main import main as cli_main

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["plan", "--run-id", run_id, "--json"]) == 0
    return json.loads(out.getvalue())
