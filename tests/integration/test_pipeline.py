"""The foundation, end to end: real dbt on DuckDB, a real Dagster instance, real artifacts."""

from __future__ import annotations

import json
import textwrap
from collections import deque
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, EventRecordsFilter

from orchestration.artifacts.store import open_store, read_run_index
from orchestration.settings import REPO_ROOT
from tests.conftest import Pipeline, free_port, reset_caches, statuses, stored_run_results
from tests.dbt_graph import all_models, dbt_tests, model_descendants

pytestmark = pytest.mark.integration

MIDDLE_MODEL = "int_deals__converted"


def materialized_keys(pipeline: Pipeline, run_id: str) -> set[str]:
    with pipeline.instance() as instance:
        records = instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ASSET_MATERIALIZATION),
            limit=10_000,
        )
    return {
        r.event_log_entry.dagster_event.asset_key.to_user_string()
        for r in records
        if r.run_id == run_id
    }


def run_logs(pipeline: Pipeline, run_id: str) -> str:
    with pipeline.instance() as instance:
        return "\n".join(e.message or "" for e in instance.all_logs(run_id))


def test_definitions_use_the_fixed_names_and_form_one_connected_graph(pipeline: Pipeline) -> None:
    from orchestration.definitions import build_definitions

    defs = build_definitions()
    assert defs.resolve_job_def("daily_pipeline")
    assert defs.resolve_job_def("weekly_full_refresh")
    assert defs.resolve_schedule_def("daily_pipeline_schedule")
    assert defs.resolve_schedule_def("weekly_full_refresh_schedule")

    graph = defs.resolve_asset_graph()
    # slim CI's copies of the dbt assets (ci/…) are their own graph (test_slim_ci.py).
    keys = {key for key in graph.get_all_asset_keys() if key.path[0] != "ci"}
    assert AssetKey(["crm", "deals"]) in keys and AssetKey(["fx", "exchange_rates"]) in keys
    assert {AssetKey([m]) for m in all_models()} <= keys
    neighbours: dict[AssetKey, set[AssetKey]] = {k: set() for k in keys}
    for key in keys:
        for parent in graph.get(key).parent_keys:
            neighbours[key].add(parent)
            neighbours.setdefault(parent, set()).add(key)
    start = next(iter(keys))
    seen, queue = {start}, deque([start])
    while queue:
        for other in neighbours[queue.popleft()] - seen:
            seen.add(other)
            queue.append(other)
    assert seen >= keys, f"disconnected: {sorted(k.to_user_string() for k in keys - seen)}"
    # Every dbt test is an asset check on the model it is attached to; error severity blocks,
    # warn severity does not (the manifest's config.severity decides, not our code).
    expected = dbt_tests()
    assert sum(expected.values()) >= 30 and not all(expected.values())  # both kinds exist
    dbt_checks = {
        (key.asset_key.to_user_string(), key.name): graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
        if key.name != "source_freshness" and key.asset_key.path[0] != "ci"
    }
    assert dbt_checks == expected


def test_an_asset_selection_subset_job_is_built_once_per_process(pipeline: Pipeline) -> None:
    """The code server asks for a retry's subset job twice (for its snapshot, then for its
    plan): the second ask gets the job the first built (``orchestration.jobs``)."""
    from orchestration.definitions import build_definitions

    repository = build_definitions().get_repository_def()
    needed = {AssetKey([m]) for m in {MIDDLE_MODEL} | model_descendants(MIDDLE_MODEL)}
    first = repository.get_maybe_subset_job_def("daily_pipeline", asset_selection=needed)
    assert first.asset_layer.selected_asset_keys == needed
    again = repository.get_maybe_subset_job_def("daily_pipeline", None, set(needed), None)
    assert again is first
    # Another selection is another job: other assets, or the same assets without their checks.
    one = repository.get_maybe_subset_job_def(
        "daily_pipeline", asset_selection={AssetKey([MIDDLE_MODEL])}
    )
    assert one.asset_layer.selected_asset_keys == {AssetKey([MIDDLE_MODEL])}
    unchecked = repository.get_maybe_subset_job_def(
        "daily_pipeline", asset_selection=needed, asset_check_selection=set()
    )
    assert unchecked is not first and not unchecked.asset_layer.asset_graph.asset_check_keys
    assert first.asset_layer.asset_graph.asset_check_keys
    # The whole job is the job itself, as before.
    whole = repository.get_maybe_subset_job_def("daily_pipeline")
    assert whole is repository.get_job("daily_pipeline")


def test_daily_pipeline_materializes_everything_and_stores_artifacts_locally(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATION_SOURCE_FRESHNESS", "1")
    reset_caches()
    result = pipeline.run_job("daily_pipeline")
    assert result.success
    done = materialized_keys(pipeline, result.run_id)
    assert all_models() <= done
    assert {"crm/deals", "crm/companies", "crm/contacts", "fx/exchange_rates"} <= done
    assert "revenue_report" in done

    with pipeline.instance() as instance:
        check_keys = list(instance.get_run_by_id(result.run_id).asset_check_selection or []) or None
        from orchestration.definitions import build_definitions

        graph = build_definitions().resolve_asset_graph()
        blocking = [
            key
            for key in graph.asset_check_keys
            if graph.get_check_spec(key).blocking and key.asset_key.path[0] != "ci"  # slim CI's
        ]
        summaries = instance.event_log_storage.get_asset_check_summary_records(blocking)
    assert check_keys is None or check_keys
    failed = [
        key.to_user_string()
        for key, summary in summaries.items()
        if summary.last_check_execution_record is None
        or summary.last_check_execution_record.status.value != "SUCCEEDED"
    ]
    assert blocking and not failed

    store = open_store(pipeline.artifacts_uri)
    index = read_run_index(store, result.run_id)
    build = [i for i in index.invocations if i.command == "build"]
    assert len(build) == 1
    assert {"manifest.json", "run_results.json", "dbt.log"} <= set(build[0].files)
    freshness = [i for i in index.invocations if i.command == "source freshness"]
    assert freshness and "sources.json" in freshness[0].files
    freshness_checks = [k for k in graph.asset_check_keys if k.name == "source_freshness"]
    assert len(freshness_checks) == 4  # one per ingested source table, warn-only
    assert not any(graph.get_check_spec(k).blocking for k in freshness_checks)
    with pipeline.instance() as instance:
        fresh = instance.event_log_storage.get_asset_check_summary_records(freshness_checks)
    assert all(r.last_check_execution_record.status.value == "SUCCEEDED" for r in fresh.values())
    (results,) = stored_run_results(store, result.run_id)
    assert set(statuses(results).values()) == {"success"}
    latest = json.loads(store.get_bytes("latest.json"))
    assert latest["run_id"] == result.run_id
    # the per-invocation target folders are gone once stored
    invocations = REPO_ROOT / "dbt_project" / "target" / "invocations"
    leftovers = (
        [p for p in invocations.glob(f"{result.run_id[:8]}-*")] if invocations.exists() else []
    )
    assert leftovers == []


def test_daily_pipeline_stores_artifacts_in_s3_over_http(
    pipeline: Pipeline, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("ORCHESTRATION_ARTIFACTS_URI", f"s3://{s3_env}/dbt")
    result = pipeline.run_job("daily_pipeline")
    assert result.success
    client = boto3.client("s3")
    listed = client.list_objects_v2(Bucket=s3_env, Prefix=f"dbt/runs/{result.run_id}/")
    names = {obj["Key"].rsplit("/", 1)[-1] for obj in listed.get("Contents", [])}
    assert {"index.json", "manifest.json", "run_results.json", "dbt.log"} <= names
    body = client.get_object(Bucket=s3_env, Key="dbt/latest.json")["Body"].read()
    assert json.loads(body)["run_id"] == result.run_id
    # Python outputs go through the S3 IO manager when the store is S3
    io_objects = client.list_objects_v2(Bucket=s3_env, Prefix="dbt/io/")
    assert any("revenue_report" in o["Key"] for o in io_objects.get("Contents", []))


def test_an_injected_fault_fails_exactly_that_model_and_a_transient_one_heals(
    pipeline: Pipeline,
) -> None:
    pipeline.faults().inject(MIDDLE_MODEL, times=1)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success

    store = open_store(pipeline.artifacts_uri)
    (results,) = stored_run_results(store, failed.run_id)
    status = statuses(results)
    downstream = model_descendants(MIDDLE_MODEL)
    assert status[MIDDLE_MODEL] == "error"
    assert downstream and all(status[m] == "skipped" for m in downstream)
    siblings = all_models() - downstream - {MIDDLE_MODEL}
    assert siblings and all(status[m] == "success" for m in siblings)
    message = next(
        r["message"] for r in results["results"] if r["unique_id"].endswith(MIDDLE_MODEL)
    )
    assert "injected transient fault" in message  # a database runtime error, not a compile one
    assert pipeline.faults().list() == []  # --times 1 is spent

    healed = pipeline.run_job("daily_pipeline")
    assert healed.success


def test_a_permanent_test_fault_fails_that_models_blocking_checks(pipeline: Pipeline) -> None:
    pipeline.faults().inject("stg_crm__deals", target="test")
    result = pipeline.run_job("daily_pipeline")
    assert not result.success
    (results,) = stored_run_results(open_store(pipeline.artifacts_uri), result.run_id)
    tests = {
        r["unique_id"]: r["status"]
        for r in results["results"]
        if r["unique_id"].startswith("test.") and "stg_crm__deals" in r["unique_id"]
    }
    assert tests and "fail" in tests.values()
    assert statuses(results)["stg_crm__deals"] == "success"
    assert pipeline.faults().list()  # permanent: still there


def test_s3_down_during_upload_changes_no_outcome_and_warns(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ORCHESTRATION_ARTIFACTS_URI", "s3://unreachable-bucket/dbt")
    monkeypatch.setenv("ORCHESTRATION_REPORT_MODEL", "no_such_model")  # no S3 IO manager step

    ok = pipeline.run_job("daily_pipeline")
    assert ok.success
    assert "dbt artifacts NOT stored in s3://unreachable-bucket/dbt" in run_logs(
        pipeline, ok.run_id
    )

    pipeline.faults().inject(MIDDLE_MODEL)
    bad = pipeline.run_job("daily_pipeline")
    assert not bad.success
    logs = run_logs(pipeline, bad.run_id)
    assert "NOT stored" in logs and "kept at" in logs


def test_another_dbt_project_loads_and_builds(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "tiny"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: tiny\nversion: '1.0'\nconfig-version: 2\nprofile: tiny\n"
    )
    (project / "profiles.yml").write_text(
        textwrap.dedent(
            """
            tiny:
              target: dev
              outputs:
                dev:
                  type: duckdb
                  path: "{{ env_var('DUCKDB_PATH') }}"
                  threads: 1
            """
        )
    )
    (project / "models" / "numbers.sql").write_text("select 1 as n union all select 2")
    (project / "models" / "doubled.sql").write_text("select n * 2 as n from {{ ref('numbers') }}")
    (project / "models" / "schema.yml").write_text(
        "version: 2\nmodels:\n  - name: doubled\n    columns:\n      - name: n\n"
        "        data_tests: [not_null, unique]\n"
    )
    monkeypatch.setenv("DBT_PROJECT_DIR", str(project))
    reset_caches()
    from orchestration.definitions import build_definitions

    keys = {
        k.to_user_string()
        for k in build_definitions().resolve_asset_graph().get_all_asset_keys()
        if k.path[0] != "ci"  # slim CI's copies
    }
    assert keys == {"numbers", "doubled"}  # no ingestion, no report: nothing assumes our names
    result = pipeline.run_job("daily_pipeline")
    assert result.success
    assert pipeline.query("select sum(n) from doubled") == [(6,)]
