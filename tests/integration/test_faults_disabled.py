"""Fault injection is off unless ``ORCHESTRATION_FAULTS_ENABLED=1``: with it off a run never
opens the faults file, no fault reaches dbt, and a permanent fault changes nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration.artifacts.store import open_store
from orchestration.faults.store import MODEL_FAULTS_VAR, TEST_FAULTS_VAR, FaultStore
from tests.conftest import Pipeline, reset_caches, statuses, stored_run_results
from tests.dbt_graph import all_models

pytestmark = pytest.mark.integration

MIDDLE_MODEL = "int_deals__converted"

_watched: list[str] | None = None
"""Paths opened while a test watches (``opened_files``); None when nobody watches."""


def _record_open(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watched is not None and args and isinstance(args[0], str | Path):
        _watched.append(str(args[0]))


sys.addaudithook(_record_open)  # audit hooks cannot be removed; it records only when watched


@pytest.fixture
def opened_files() -> Iterator[list[str]]:
    """Every path this process opens while the test runs (Python's ``open`` audit event)."""
    global _watched
    _watched = []
    try:
        yield _watched
    finally:
        _watched = None


def test_with_fault_injection_off_a_permanent_fault_is_ignored_and_never_read(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, opened_files: list[str]
) -> None:
    faults = FaultStore(pipeline.faults_file)  # written as a drill would, then switched off
    faults.inject(MIDDLE_MODEL)
    faults.inject("stg_crm__deals", target="test")
    faults.inject("revenue_report")
    before = pipeline.faults_file.read_bytes()
    monkeypatch.setenv("ORCHESTRATION_FAULTS_ENABLED", "0")
    reset_caches()
    opened_files.clear()

    result = pipeline.run_job("daily_pipeline")

    assert result.success
    faults_paths = {str(pipeline.faults_file), f"{pipeline.faults_file}.lock"}
    assert not faults_paths & {str(Path(p)) for p in opened_files}
    assert pipeline.faults_file.read_bytes() == before  # nothing counted down either
    (run_results,) = stored_run_results(open_store(pipeline.artifacts_uri), result.run_id)
    assert set(statuses(run_results)) == all_models()
    assert set(statuses(run_results).values()) == {"success"}
    assert set(statuses(run_results, prefix="test.").values()) == {"pass"}
    dbt_vars = run_results["args"].get("vars") or {}
    assert MODEL_FAULTS_VAR not in dbt_vars and TEST_FAULTS_VAR not in dbt_vars
