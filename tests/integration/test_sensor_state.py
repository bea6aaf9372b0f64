"""``read_tick_state`` on a real Dagster instance, with a tiny asset and real check runs.

No dbt: one asset with two blocking checks, each its own op, so a run can re-evaluate one check
without its asset (what Dagster's *From asset failure* does for a failed check). On a SQLite and
on a PostgreSQL instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetSelection,
    DagsterInstance,
    Definitions,
    asset,
    asset_check,
    materialize,
)

from orchestration.history.tick_state import FailureKind, read_tick_state
from tests.conftest import STORAGE_PASSWORD_ENV

pytestmark = pytest.mark.integration


@asset
def orders() -> int:
    return 1


@asset_check(asset=orders, blocking=True)
def a_rows_positive() -> AssetCheckResult:
    return AssetCheckResult(passed=False)


@asset_check(asset=orders, blocking=True)
def z_ids_unique() -> AssetCheckResult:
    return AssetCheckResult(passed=False)


DEFS = Definitions(assets=[orders], asset_checks=[a_rows_positive, z_ids_unique])
A_CHECK = AssetCheckKey(orders.key, "a_rows_positive")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    config = "telemetry:\n  enabled: false\n"
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_db")
        config += database.dagster_storage_yaml(STORAGE_PASSWORD_ENV)
        monkeypatch.setenv(STORAGE_PASSWORD_ENV, database.password)
    (tmp_path / "dagster.yaml").write_text(config)
    with DagsterInstance.from_config(str(tmp_path)) as found:
        yield found


def test_a_failed_check_belongs_to_the_latest_run_that_evaluated_the_assets_checks(
    instance: DagsterInstance,
) -> None:
    # r1 builds orders and both checks fail; r2 re-evaluates a_rows_positive alone, which fails
    # again. The failure belongs to r2 (the latest evaluation), whatever the checks are named.
    everything = [orders, a_rows_positive, z_ids_unique]
    first = materialize(everything, instance=instance, raise_on_error=False)
    again = materialize(
        everything,
        instance=instance,
        selection=AssetSelection.checks(A_CHECK),
        raise_on_error=False,
    )
    assert not first.success and not again.success

    state = read_tick_state(instance, DEFS.get_repository_def().asset_graph)

    failed = state.failed["orders"]
    assert failed.kind is FailureKind.CHECK_FAILED
    assert failed.run_id == again.run_id
    assert failed.checks == ("a_rows_positive", "z_ids_unique")
