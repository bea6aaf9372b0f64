"""``deploy/`` says what it does: the production ``dagster.yaml`` loads against a real PostgreSQL
with the queue and run monitoring it promises, the Helm values match it, no credential is
written in any deploy file, the guide's IAM policy is least-privilege and the webserver binds
127.0.0.1. Docs that drift from the code fail here, not in someone's deployment."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance

from orchestration.settings import REPO_ROOT
from tests.postgres import PostgresServer

DEPLOY = REPO_ROOT / "deploy"
WAREHOUSE_TAG = "orchestration/warehouse"
BUCKET, PREFIX = "example-dbt-artifacts", "orchestration"


def dagster_yaml() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())


def guide_json_blocks() -> list[Any]:
    text = (DEPLOY / "README.md").read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def connections_opened(run_storage: Any, schedule_storage: Any) -> dict[str, int]:
    """A live count of the database connections each storage's engine opens from now on."""
    from sqlalchemy import event

    opened = {"run": 0, "schedule": 0}
    for name, storage in (("run", run_storage), ("schedule", schedule_storage)):
        storage._engine.dispose()  # count from an empty pool

        def count(*_args: Any, name: str = name) -> None:
            opened[name] += 1

        event.listen(storage._engine, "connect", count)
    return opened


def catalog_reads(storage: Any) -> list[str]:
    """A live list of the statements ``storage`` sends that read PostgreSQL's catalog (the
    schema inspections SQLAlchemy makes for Dagster's column probes)."""
    from sqlalchemy import event

    found: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "pg_catalog.pg_attribute" in statement:
            found.append(statement)

    event.listen(storage._engine, "before_cursor_execute", note)
    return found


@pytest.mark.integration
@pytest.mark.postgres
def test_the_production_dagster_yaml_loads_on_postgresql_with_its_queue_and_run_monitoring(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    from orchestration.instance.postgres_event_log import PooledPostgresEventLogStorage
    from orchestration.instance.postgres_storage import (
        PooledPostgresRunStorage,
        PooledPostgresScheduleStorage,
    )

    database = postgres_server.create_database("dagster", user=f"dagster_{uuid.uuid4().hex[:8]}")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name, value in {
        "DAGSTER_PG_HOST": database.host,
        "DAGSTER_PG_PORT": str(database.port),
        "DAGSTER_PG_USER": database.user,
        "DAGSTER_PG_PASSWORD": database.password,
        "DAGSTER_PG_DB": database.name,
    }.items():
        monkeypatch.setenv(name, value)

    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []  # connected, schema created
        assert isinstance(instance.run_storage, PooledPostgresRunStorage)
        assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PooledPostgresScheduleStorage)
        # One kept connection per storage, not one per statement (stock: NullPool).
        opened = connections_opened(instance.run_storage, instance.schedule_storage)
        inspections = catalog_reads(instance.run_storage)
        for _ in range(10):
            instance.get_runs(limit=1)
            instance.get_run_records(limit=1)
            instance.all_instigator_state()
        assert opened == {"run": 1, "schedule": 1}
        # The runs table's columns were inspected by the first read above, not again.
        assert inspections == []
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        limits = {
            limit["key"]: limit
            for limit in coordinator.get_run_queue_config().tag_concurrency_limits
        }
        assert limits[WAREHOUSE_TAG]["limit"] >= 1
        assert limits["orchestration/trigger"]["value"] == "retry_failed_assets_sensor"
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_monitoring_max_runtime_seconds > 0
        assert not instance.run_retries_enabled


def test_no_credential_is_written_in_any_deploy_file() -> None:
    postgres_db = dagster_yaml()["run_storage"]["config"]["postgres_db"]
    for field in ("hostname", "port", "username", "password", "db_name"):
        assert set(postgres_db[field]) == {"env"}, f"{field} must come from the environment"
    values = helm_values()
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["postgresql"]["postgresqlPassword"] == ""
    for path in DEPLOY.iterdir():
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), f"an AWS access key id in {path}"
        assert not re.search(r"(?i)(secret_access_key|password)\s*[:=]\s*['\"]?\w{6,}", text), (
            f"something that looks like a literal secret in {path}"
        )


def test_the_helm_values_use_the_k8s_run_launcher_and_the_same_queue_and_monitoring() -> None:
    values = helm_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert (
        values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"][
            "backoffLimit"
        ]
        == 0
    )
    assert values["postgresql"]["enabled"] is False  # a managed database, not the demo one
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"

    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance_queue = dagster_yaml()["run_coordinator"]["config"]
    assert queued["maxConcurrentRuns"] == instance_queue["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == instance_queue["tag_concurrency_limits"]
    monitoring = dagster_yaml()["run_monitoring"]
    assert daemon["runMonitoring"]["enabled"] is monitoring["enabled"] is True
    assert daemon["runMonitoring"]["maxResumeRunAttempts"] == 0
    assert daemon["runMonitoring"]["maxRuntimeSeconds"] == monitoring["max_runtime_seconds"]
    assert daemon["runRetries"]["enabled"] is False

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == [
        "--module-name",
        "orchestration.definitions",
        "--attribute",
        "defs",
    ]


def test_the_guides_iam_policy_grants_object_access_and_listing_under_the_prefix_only() -> None:
    (policy,) = [block for block in guide_json_blocks() if "Statement" in block]
    actions: dict[str, dict[str, Any]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else (statement["Action"])
        ):
            actions[action] = statement
    assert set(actions) == {"s3:PutObject", "s3:GetObject", "s3:ListBucket"}
    for action in ("s3:PutObject", "s3:GetObject"):
        assert actions[action]["Resource"] == f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"
    listing = actions["s3:ListBucket"]
    assert listing["Resource"] == f"arn:aws:s3:::{BUCKET}"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{PREFIX}/*"]}}

    (lifecycle,) = [block for block in guide_json_blocks() if "Rules" in block]
    (rule,) = lifecycle["Rules"]
    assert rule["Filter"]["Prefix"] == f"{PREFIX}/runs/" and rule["Expiration"]["Days"] > 0


def test_the_webserver_binds_127_0_0_1_unless_told_otherwise() -> None:
    dev = next(
        line for line in (REPO_ROOT / "Makefile").read_text().splitlines() if "dagster dev" in line
    )
    assert "-h 127.0.0.1" in dev
    guide = (DEPLOY / "README.md").read_text()
    assert "dagster-webserver -w workspace.yaml -h 127.0.0.1" in guide
    assert "0.0.0.0" not in guide + (DEPLOY / "helm-values.yaml").read_text()
