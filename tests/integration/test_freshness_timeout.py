"""``dbt source freshness`` cannot hold a run forever: it stops after
``ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS`` and says so in the (warn-only) check result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dagster import AssetKey, execute_job
from dagster._core.definitions.reconstruct import build_reconstructable_job

from orchestration.dbt.freshness import CHECK_NAME
from tests.conftest import Pipeline, reset_caches

pytestmark = pytest.mark.integration

INGESTED = [AssetKey(["crm", "deals"]), AssetKey(["fx", "exchange_rates"])]


def test_a_hanging_source_freshness_is_stopped_and_named_in_the_check_result(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A "dbt" that never answers, like a warehouse that accepts connections and then hangs.
    hanging = tmp_path / "dbt"
    hanging.write_text("#!/bin/sh\nexec sleep 120\n")
    hanging.chmod(0o755)
    monkeypatch.setattr("orchestration.dbt.project.dbt_executable", lambda: str(hanging))
    monkeypatch.setenv("ORCHESTRATION_SOURCE_FRESHNESS", "1")
    monkeypatch.setenv("ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS", "2")
    reset_caches()
    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=("daily_pipeline",)
    )
    started = time.monotonic()
    with pipeline.instance() as instance:
        result = execute_job(job, instance=instance, asset_selection=INGESTED)
        evaluations = [
            event.asset_check_evaluation_data
            for event in result.all_events
            if event.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
    elapsed = time.monotonic() - started

    assert result.success  # freshness warns, it never fails the run
    assert elapsed < 60, f"the hanging dbt was not stopped ({elapsed:.0f} s)"
    assert {e.asset_key for e in evaluations if e.check_name == CHECK_NAME} == set(INGESTED)
    for evaluation in evaluations:
        assert not evaluation.passed
        problem = evaluation.metadata["problem"].value
        assert "ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS" in problem, problem
        assert "did not finish within 2 s" in problem
