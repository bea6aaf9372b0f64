"""Parsing dbt's run_results.json: the real shape parses, anything else fails naming the file."""

from __future__ import annotations

import json

import pytest

from orchestration.artifacts.run_results import (
    RUN_RESULTS_SCHEMA_V6,
    NodeResult,
    RunResults,
    merge_run_results,
    parse_run_results,
    resource_type_of,
)
from orchestration.errors import RunResultsError

SOURCE = "s3://artifacts/runs/4f1c2a9/run_results.json"

# Shaped like what `dbt build --fail-fast --threads 2` writes with dbt 1.11 on DuckDB when
# model_beta_a divides by zero: beta_b had started and was cancelled, gamma_a never started.
REALISTIC_RUN_RESULTS = {
    "metadata": {
        "dbt_schema_version": RUN_RESULTS_SCHEMA_V6,
        "dbt_version": "1.11.2",
        "generated_at": "2025-06-02T03:14:07.512345Z",
        "invocation_id": "3c1e27b8-9a0f-4a9e-bd5e-7f2d1c0e8a11",
        "invocation_started_at": "2025-06-02T03:13:58.101010Z",
        "env": {},
    },
    "results": [
        {
            "status": "success",
            "timing": [
                {
                    "name": "compile",
                    "started_at": "2025-06-02T03:14:00.000001Z",
                    "completed_at": "2025-06-02T03:14:00.010001Z",
                },
                {
                    "name": "execute",
                    "started_at": "2025-06-02T03:14:00.010101Z",
                    "completed_at": "2025-06-02T03:14:00.402101Z",
                },
            ],
            "thread_id": "Thread-1 (worker)",
            "execution_time": 0.4121,
            "adapter_response": {"_message": "OK", "code": "OK", "rows_affected": 3},
            "message": "OK",
            "failures": None,
            "unique_id": "model.jaffle.model_alpha",
            "compiled": True,
            "compiled_code": "select 1 as id",
            "relation_name": '"dev"."main"."model_alpha"',
            "batch_results": None,
        },
        {
            "status": "pass",
            "timing": [],
            "thread_id": "Thread-2 (worker)",
            "execution_time": 0.05,
            "adapter_response": {},
            "message": None,
            "failures": 0,
            "unique_id": "test.jaffle.not_null_model_alpha_id.5fb22c2710",
            "compiled": True,
            "compiled_code": "select id from model_alpha where id is null",
            "relation_name": None,
            "batch_results": None,
        },
        {
            "status": "error",
            "timing": [],
            "thread_id": "Thread-1 (worker)",
            "execution_time": 0.081,
            "adapter_response": {},
            "message": "Runtime Error in model model_beta_a (models/model_beta_a.sql)\n"
            "  Conversion Error: division by zero",
            "failures": None,
            "unique_id": "model.jaffle.model_beta_a",
            "compiled": True,
            "compiled_code": "select 1 / 0 as id",
            "relation_name": '"dev"."main"."model_beta_a"',
            "batch_results": None,
        },
        {
            "status": "skipped",
            "timing": [],
            "thread_id": "MainThread",
            "execution_time": 0,
            "adapter_response": {},
            "message": "Skipping due to fail_fast",
            "failures": None,
            "unique_id": "model.jaffle.model_beta_b",
            "compiled": False,
            "compiled_code": None,
            "relation_name": '"dev"."main"."model_beta_b"',
            "batch_results": None,
        },
        {
            "status": "skipped",
            "timing": [],
            "thread_id": "MainThread",
            "execution_time": 0,
            "adapter_response": {},
            "message": "Skipping due to fail_fast",
            "failures": None,
            "unique_id": "model.jaffle.model_gamma_a",
            "compiled": False,
            "compiled_code": None,
            "relation_name": '"dev"."main"."model_gamma_a"',
            "batch_results": None,
        },
    ],
    "elapsed_time": 2.734,
    "args": {
        "which": "build",
        "select": ["fqn:*"],
        "fail_fast": True,
        "threads": 2,
        "invocation_command": "dbt build --select fqn:* --fail-fast --threads 2",
        "vars": {},
        "write_json": True,
    },
}


def _dumps(document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_realistic_run_results_parses_into_typed_results() -> None:
    results = parse_run_results(_dumps(REALISTIC_RUN_RESULTS), source=SOURCE)

    assert results.invocation_id == "3c1e27b8-9a0f-4a9e-bd5e-7f2d1c0e8a11"
    assert results.dbt_version == "1.11.2"
    assert results.generated_at == "2025-06-02T03:14:07.512345Z"
    assert results.command == "build"
    assert results.fail_fast is True
    assert results.elapsed_time_s == pytest.approx(2.734)
    assert [result.resource_type for result in results.results] == [
        "model",
        "test",
        "model",
        "model",
        "model",
    ]
    beta_a = results.by_unique_id["model.jaffle.model_beta_a"]
    assert beta_a.status == "error"
    assert beta_a.message is not None and "division by zero" in beta_a.message
    assert results.by_unique_id["test.jaffle.not_null_model_alpha_id.5fb22c2710"].failures == 0


def test_fail_fast_cut_offs_are_told_apart_from_upstream_skips() -> None:
    cut_off = NodeResult("model.p.b", "model", "skipped", "Skipping due to fail_fast")
    upstream_skip = NodeResult("model.p.c", "model", "skipped", None)
    errored = NodeResult("model.p.d", "model", "error", "fail_fast mentioned in an error")

    assert cut_off.cut_off_by_fail_fast
    assert not upstream_skip.cut_off_by_fail_fast
    assert not errored.cut_off_by_fail_fast


def test_a_run_results_round_trips_through_its_own_json_shape() -> None:
    results = parse_run_results(_dumps(REALISTIC_RUN_RESULTS), source=SOURCE)

    again = RunResults.from_dict(json.loads(json.dumps(results.to_dict())), source=SOURCE)

    assert again == results


def test_older_run_results_versions_still_parse() -> None:
    document = json.loads(json.dumps(REALISTIC_RUN_RESULTS))
    document["metadata"]["dbt_schema_version"] = (
        "https://schemas.getdbt.com/dbt/run-results/v5.json"
    )

    assert len(parse_run_results(_dumps(document), source=SOURCE).results) == 5


def test_a_truncated_file_is_rejected_naming_the_file_and_what_to_do() -> None:
    whole = _dumps(REALISTIC_RUN_RESULTS)

    with pytest.raises(RunResultsError) as raised:
        parse_run_results(whole[: len(whole) // 2], source=SOURCE)

    message = str(raised.value)
    assert f"{SOURCE} is truncated or not valid JSON (" in message
    assert "point at another run's artifacts" in message


@pytest.mark.parametrize(
    "corrupt",
    [b"\x89PNG\r\n\x1a\n\x00\x00", b"<html><body>Access Denied</body></html>", b"   \n"],
    ids=["binary", "an-error-page", "empty"],
)
def test_a_corrupt_file_is_rejected_naming_the_file(corrupt: bytes) -> None:
    with pytest.raises(RunResultsError, match=r"s3://artifacts/runs/4f1c2a9/run_results\.json"):
        parse_run_results(corrupt, source=SOURCE)


def test_a_manifest_is_rejected_as_a_manifest() -> None:
    manifest = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "dbt_version": "1.11.2",
        },
        "nodes": {},
        "sources": {},
    }

    with pytest.raises(RunResultsError) as raised:
        parse_run_results(_dumps(manifest), source="target/run_results.json")

    message = str(raised.value)
    assert message.startswith("target/run_results.json is a dbt manifest artifact")
    assert "not run_results" in message


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([1, 2, 3], "top level is a JSON list"),
        ({"results": []}, "no metadata.dbt_schema_version"),
        ({"metadata": {"dbt_schema_version": RUN_RESULTS_SCHEMA_V6}}, "no 'results' list"),
        (
            {"metadata": {"dbt_schema_version": RUN_RESULTS_SCHEMA_V6}, "results": ["x"]},
            "results[0] that is not an object",
        ),
        (
            {
                "metadata": {"dbt_schema_version": RUN_RESULTS_SCHEMA_V6},
                "results": [{"unique_id": "model.p.a", "status": "success"}, {"status": "error"}],
            },
            "results[1] without a 'unique_id'",
        ),
        (
            {
                "metadata": {"dbt_schema_version": RUN_RESULTS_SCHEMA_V6},
                "results": [{"unique_id": "model.p.a"}],
            },
            "results[0] without a 'status'",
        ),
    ],
    ids=["a-list", "no-metadata", "no-results", "a-bad-entry", "no-unique-id", "no-status"],
)
def test_a_file_missing_what_recovery_needs_is_rejected_naming_the_file(
    document: object, problem: str
) -> None:
    with pytest.raises(RunResultsError) as raised:
        parse_run_results(_dumps(document), source=SOURCE)

    message = str(raised.value)
    assert message.startswith(SOURCE)
    assert problem in message
    assert "Re-run the job without artifacts" in message


def test_optional_fields_may_be_missing_or_null() -> None:
    document = {
        "metadata": {"dbt_schema_version": RUN_RESULTS_SCHEMA_V6},
        "results": [{"unique_id": "seed.p.raw", "status": "success", "execution_time": None}],
    }

    results = parse_run_results(_dumps(document), source=SOURCE)

    assert results.command is None
    assert results.args == {}
    assert results.results == (NodeResult("seed.p.raw", "seed", "success", None, 0.0, None),)


def test_merging_invocations_keeps_the_latest_result_per_node() -> None:
    first = parse_run_results(_dumps(REALISTIC_RUN_RESULTS), source=SOURCE)
    retry = RunResults(
        invocation_id="second",
        dbt_version="1.11.2",
        generated_at="2025-06-02T03:20:00Z",
        command="retry",
        args={"which": "retry"},
        elapsed_time_s=1.0,
        results=(NodeResult("model.jaffle.model_beta_a", "model", "success", "OK", 0.3, None),),
    )

    merged = merge_run_results([first, retry])

    assert merged.by_unique_id["model.jaffle.model_beta_a"].status == "success"
    assert merged.by_unique_id["model.jaffle.model_alpha"].status == "success"
    assert len(merged.results) == 5
    assert merged.invocation_id == "second"
    assert merged.elapsed_time_s == pytest.approx(3.734)


def test_the_resource_type_comes_from_the_unique_id_prefix() -> None:
    assert resource_type_of("unit_test.jaffle.model_alpha.test_ids") == "unit_test"
    assert resource_type_of("snapshot.jaffle.deals_snapshot") == "snapshot"
