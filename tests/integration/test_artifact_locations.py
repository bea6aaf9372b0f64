"""``retry_from_artifacts`` through the ``recover_from_artifacts`` job (local store) and against
moto's S3 server: only the store and the operator's extra prefixes are read; anything else
fails the run with one message naming ``ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS`` — the same for
a file that exists and one that does not — and its content never shows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType

from orchestration.artifacts.locations import REFUSAL, LocationRefusedError
from orchestration.artifacts.store import open_store
from orchestration.dbt.selection import read_location
from tests.conftest import Pipeline, reset_caches

pytestmark = pytest.mark.integration

SECRET = "SECRET-CONTENT-93d1"


def run_results(status: str = "success") -> dict[str, Any]:
    """A valid dbt run_results.json; all-success plans nothing, so no dbt runs."""
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": "1.11.0",
            "generated_at": "2026-01-01T04:00:00Z",
            "invocation_id": str(uuid.uuid4()),
        },
        "results": [
            {
                "unique_id": "model.crm_revenue.int_deals__converted",
                "status": status,
                "message": None,
                "execution_time": 0.1,
            }
        ],
        "elapsed_time": 1.0,
        "args": {"which": "build"},
    }


def recover(pipeline: Pipeline, location: str) -> tuple[bool, str, str]:
    """Run ``recover_from_artifacts`` from ``location``: (success, error texts, every log)."""
    config = {"ops": {"dbt_models": {"config": {"retry_from_artifacts": location}}}}
    result = pipeline.run_job("recover_from_artifacts", run_config=config)
    errors: list[str] = []
    with pipeline.instance() as instance:
        entries = instance.all_logs(result.run_id)
    for entry in entries:
        if entry.dagster_event and entry.dagster_event.event_type in {
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.RUN_FAILURE,
        }:
            error = getattr(entry.dagster_event.event_specific_data, "error", None)
            while error is not None:
                errors.append(error.message)
                error = error.cause
    logs = "\n".join(str(entry) for entry in entries)
    return result.success, "\n".join(errors), logs


def test_recover_from_artifacts_reads_only_the_store_and_the_allowed_prefixes(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # Valid JSON whose keys a "not a run_results file" error would once have listed.
    (outside / "run_results.json").write_text(json.dumps({SECRET: {"token": SECRET}}))
    store_root = Path(pipeline.artifacts_uri)
    (store_root / "external").mkdir(parents=True)
    (store_root / "external" / "evil").symlink_to(outside)
    partner = tmp_path / "partner"
    (partner / "nightly").mkdir(parents=True)
    (partner / "nightly" / "run_results.json").write_text(json.dumps(run_results()))
    look_alike = tmp_path / "partner-evil" / "nightly"
    look_alike.mkdir(parents=True)
    (look_alike / "run_results.json").write_text(json.dumps({SECRET: 1}))
    monkeypatch.setenv("ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS", str(partner))
    reset_caches()

    refused = {
        "existing": str(outside),
        "missing": str(tmp_path / "no-such-folder"),
        "file uri": f"file://{outside}/run_results.json",
        "climbing key": "../../" * 8 + str(outside).lstrip("/"),
        "symlink out of the store": "external/evil",
        "look-alike prefix": str(look_alike),
    }
    errors: dict[str, str] = {}
    for case, location in refused.items():
        success, errors[case], logs = recover(pipeline, location)
        assert not success, case
        assert REFUSAL in errors[case], (case, errors[case])
        assert SECRET not in logs, case
    assert errors["existing"] == errors["missing"]  # existence is not revealed

    success, _, logs = recover(pipeline, str(partner / "nightly"))
    assert success
    assert f"Recovery plan from {partner / 'nightly' / 'run_results.json'}" in logs


def test_another_bucket_is_refused_unread_and_an_allowed_bucket_prefix_is_read(
    s3_env: str, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server)
    other = f"other-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=other)
    client.put_object(Bucket=other, Key="secret/run_results.json", Body=SECRET.encode())
    client.put_object(
        Bucket=other, Key="exports/nightly/run_results.json", Body=json.dumps(run_results())
    )
    store = open_store(f"s3://{s3_env}/dbt")
    store.put_bytes("external/nightly/run_results.json", b"{}")

    messages = []
    for location in (f"s3://{other}/secret", f"s3://{other}/missing", f"s3://{s3_env}/elsewhere"):
        with pytest.raises(LocationRefusedError) as caught:
            read_location(store, location)
        messages.append(str(caught.value))
    assert set(messages) == {REFUSAL}

    data, source = read_location(store, f"s3://{s3_env}/dbt/external/nightly")
    assert (data, source) == (b"{}", f"s3://{s3_env}/dbt/external/nightly/run_results.json")
    allowed = (f"s3://{other}/exports",)
    data, _ = read_location(store, f"s3://{other}/exports/nightly", extra_locations=allowed)
    assert json.loads(data)["results"][0]["status"] == "success"
    with pytest.raises(LocationRefusedError):
        read_location(store, f"s3://{other}/secret", extra_locations=allowed)
