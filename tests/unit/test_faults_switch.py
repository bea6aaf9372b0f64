"""``faults inject`` with fault injection off refuses, says how to turn it on, writes nothing;
a disabled store hands dbt no vars even when the file lists faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.cli.main import main as cli_main
from orchestration.faults.store import FaultStore
from orchestration.settings import load_settings


def test_inject_with_faults_off_refuses_and_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    faults_file = tmp_path / "faults.json"
    monkeypatch.setenv("ORCHESTRATION_FAULTS_FILE", str(faults_file))
    monkeypatch.delenv("ORCHESTRATION_FAULTS_ENABLED", raising=False)

    assert cli_main(["faults", "inject", "int_deals__converted"]) == 2
    error = capsys.readouterr().err
    assert "Fault injection is off" in error
    assert "ORCHESTRATION_FAULTS_ENABLED=1" in error
    assert not faults_file.exists()

    monkeypatch.setenv("ORCHESTRATION_FAULTS_ENABLED", "1")
    assert cli_main(["faults", "inject", "int_deals__converted"]) == 0
    assert [f.model for f in FaultStore(faults_file).list()] == ["int_deals__converted"]


def test_a_disabled_store_gives_dbt_no_vars_and_counts_nothing_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults_file = tmp_path / "faults.json"
    FaultStore(faults_file).inject("int_deals__converted", times=1)
    before = faults_file.read_bytes()
    monkeypatch.setenv("ORCHESTRATION_FAULTS_FILE", str(faults_file))
    monkeypatch.setenv("ORCHESTRATION_FAULTS_ENABLED", "0")

    store = FaultStore.from_settings(load_settings())
    assert store.dbt_vars() == {}
    failed = {
        "results": [
            {
                "unique_id": "model.crm_revenue.int_deals__converted",
                "status": "error",
                "message": "connection reset by peer (injected transient fault)",
            }
        ]
    }
    assert store.record_invocation(failed) == []
    store.fire_python_fault("int_deals__converted")  # does not raise
    assert faults_file.read_bytes() == before
