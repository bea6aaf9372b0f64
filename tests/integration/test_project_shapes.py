"""A jaffle-shop-shaped project brought through ``DBT_PROJECT_DIR``: it builds, and every
recovery path re-runs exactly the broken node and its downstream (issue 9).

Its seeds load the ``raw`` tables its sources read, so Dagster's lineage has seed → staging
edges that dbt's DAG lacks; a plain ``dbt build`` on a fresh warehouse fails on the missing
tables and dagster-dbt's one-op build fails Dagster's topological-order check. Expected sets
come from the project's manifest (``tests/project_shapes.py``), executed sets from each
recovery run's own stored run_results.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from dagster import DagsterEventType, execute_job

from orchestration.cli.main import main as cli_main
from tests.conftest import Pipeline, plan_json
from tests.integration.test_retry_sensor import SensorDriver, execute_retry
from tests.project_shapes import (
    Project,
    all_buildables,
    downstream_buildables,
    node_id,
    use_project,
)

pytestmark = pytest.mark.integration

BROKEN_ORDERS = "select nope_no_such_column from {{ ref('stg_orders') }}\n"


@pytest.fixture
def jaffle(pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return use_project("jaffle_like", pipeline, tmp_path, monkeypatch)


def keys_to_unique_ids() -> dict[str, str]:
    """Asset user string → dbt unique_id, from the metadata dagster-dbt puts on each spec."""
    from orchestration.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    found: dict[str, str] = {}
    for assets_def in graph.assets_defs:
        for spec in assets_def.specs:
            uid = spec.metadata.get("dagster_dbt/unique_id")
            if uid:
                found[spec.key.to_user_string()] = uid
    return found


def as_unique_ids(keys: set[str]) -> set[str]:
    mapping = keys_to_unique_ids()
    return {mapping[key] for key in keys if key in mapping}


def break_file(project: Project, relative: str, text: str) -> str:
    """Write ``text`` over a project file; return the original to restore."""
    path = project.file(relative)
    original = path.read_text()
    path.write_text(text)
    return original


def test_seeds_run_before_the_staging_models_that_read_them_and_everything_builds(
    jaffle: Project,
) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["run", "--job", "daily_pipeline"]) == 0
    summary = out.getvalue()
    run_id = summary.split("daily_pipeline: SUCCESS  run_id=")[1].split()[0]
    manifest = jaffle.manifest()
    assert jaffle.executed(run_id) == all_buildables(manifest)
    _assert_every_node_ran_once_and_the_rest_was_spelled_as_a_complement(jaffle, run_id, manifest)

    # The seed that loads raw_orders finished before the staging view reading it started.
    timing = _timing(jaffle, run_id)
    seed, staging = (
        node_id(manifest, "seed.", "raw_orders"),
        node_id(manifest, "model.", "stg_orders"),
    )
    assert timing[seed][1] <= timing[staging][0]
    # Lineage stays the resolved one: the seed is the staging model's parent in Dagster.
    from orchestration.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents["staging/stg_orders"] == {"raw/raw_orders"}
    # Data is right (package macro, versioned model): Ada spent 12.00 + 8.00.
    assert jaffle.query("select lifetime_spend from marts.customers_v2 where customer_id = 1") == [
        (20,)
    ]
    # The summary names the profile's own warehouse, not our default DUCKDB_PATH.
    assert f"warehouse : duckdb {jaffle.warehouse}" in summary
    assert "target dev of profile jaffle_like" in summary
    assert "models    : 9 success" in summary and "seeds     : 4 success" in summary
    assert "log       : " in summary
    assert " - dagster - " not in summary  # the event stream went to the log file
    assert dbt_processes_in(jaffle.path) == []


def _assert_every_node_ran_once_and_the_rest_was_spelled_as_a_complement(
    project: Project, run_id: str, manifest: dict
) -> None:
    """Every model, seed, snapshot, data test, unit test, exposure and saved query ran in
    exactly one stage (as before stages were spelled as complements), and the last stage was
    put to dbt as "everything but what the first stage ran": dbt's selection cost grows with
    the number of criteria."""
    from orchestration.artifacts.store import open_store
    from tests.conftest import stored_run_results

    documents = stored_run_results(open_store(project.pipeline.artifacts_uri), run_id)
    ran = [result["unique_id"] for document in documents for result in document["results"]]
    expected = all_buildables(manifest) | set(manifest["unit_tests"])
    expected |= set(manifest["exposures"]) | set(manifest["saved_queries"])
    expected |= {uid for uid in manifest["nodes"] if uid.startswith("test.")}
    assert sorted(ran) == sorted(expected)
    assert manifest["unit_tests"] and any(uid.startswith("test.") for uid in manifest["nodes"])
    first, last = documents[0], documents[-1]["args"]
    assert last["select"] == ["fqn:*"]
    # One criterion per node of the first stage, except the project's seeds, which all ran
    # there (seeds load what the sources read): one `resource_type:seed` for the lot.
    first_ids = {result["unique_id"] for result in first["results"]}
    seeds = {uid for uid in manifest["nodes"] if uid.startswith("seed.")}
    assert len(seeds) > 1 and seeds <= first_ids
    assert sorted(last["exclude"]) == sorted(
        ["resource_type:seed"]
        + ["fqn:" + ".".join(manifest["nodes"][uid]["fqn"]) for uid in first_ids - seeds]
    )


def _timing(project: Project, run_id: str) -> dict[str, tuple[str, str]]:
    from orchestration.artifacts.store import open_store
    from tests.conftest import stored_run_results

    found: dict[str, tuple[str, str]] = {}
    for document in stored_run_results(open_store(project.pipeline.artifacts_uri), run_id):
        for result in document["results"]:
            execute = [t for t in result.get("timing", []) if t["name"] == "execute"]
            if execute:
                found[result["unique_id"]] = (execute[0]["started_at"], execute[0]["completed_at"])
    return found


def test_a_broken_mid_graph_model_is_recovered_exactly_by_every_path(jaffle: Project) -> None:
    pipeline = jaffle.pipeline
    original = break_file(jaffle, "models/marts/orders.sql", BROKEN_ORDERS)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    break_file(jaffle, "models/marts/orders.sql", original)  # the fix lands
    manifest = jaffle.manifest()
    needed = downstream_buildables(manifest, node_id(manifest, "model.", ".orders"))
    assert len(needed) == 4  # orders, customers v1 + v2, customer_segments
    assert jaffle.executed(failed.run_id, ("success",)) == all_buildables(manifest) - needed

    plan = plan_json(failed.run_id)
    assert as_unique_ids({a["key"] for a in plan["assets"]}) == needed
    # Nodes that are no asset are named, never dropped: what sits on the re-run models.
    assert {n["unique_id"] for n in plan["not_assets"]} == {
        "exposure.jaffle_like.weekly_dashboard",
        "metric.jaffle_like.order_total",
        "saved_query.jaffle_like.order_total_by_day",
        "semantic_model.jaffle_like.orders",
    }
    assert plan["unknown_nodes"] == []  # tests on sources are known, just not checks
    with pipeline.instance() as instance:
        run = instance.get_run_by_id(failed.run_id)
        snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        dagster_keys, _ = instance.run_domain.get_keys_to_reexecute(failed.run_id, snapshot)
    assert as_unique_ids({k.to_user_string() for k in dagster_keys}) == needed

    config = {"ops": {"dbt_models": {"config": {"retry_from_run_id": failed.run_id}}}}
    from_artifacts = pipeline.run_job("recover_from_artifacts", run_config=config)
    assert from_artifacts.success
    assert jaffle.executed(from_artifacts.run_id) == needed

    asset_failure = _run_assets(pipeline, dagster_keys)  # what *From asset failure* selects
    assert asset_failure.success
    assert jaffle.executed(asset_failure.run_id) == needed

    from_failure = pipeline.reexecute(failed.run_id)
    assert from_failure.success
    assert jaffle.executed(from_failure.run_id) == needed
    assert dbt_processes_in(jaffle.path) == []


def _run_assets(pipeline: Pipeline, keys: object) -> object:
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from orchestration.settings import REPO_ROOT

    job = ReconstructableRepository.for_module(
        "orchestration.definitions", "defs", working_directory=str(REPO_ROOT)
    ).get_reconstructable_job("__ASSET_JOB")
    with pipeline.instance() as instance:
        return execute_job(job, instance=instance, asset_selection=list(keys), raise_on_error=False)


def test_a_broken_seed_reruns_the_staging_models_that_read_it(jaffle: Project) -> None:
    pipeline = jaffle.pipeline
    seed_file = "seeds/raw_orders.csv"
    original = break_file(jaffle, seed_file, "id,customer\n10,1,too,many,values\n")
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    manifest = jaffle.manifest()
    seed = node_id(manifest, "seed.", "raw_orders")
    needed = downstream_buildables(manifest, seed)
    assert node_id(manifest, "model.", "stg_orders") in needed  # only through the source
    # The models that read the broken seed were not run on stale data in the later stage.
    assert jaffle.executed(failed.run_id, ("success",)) == all_buildables(manifest) - needed

    plan = plan_json(failed.run_id)
    assert as_unique_ids({a["key"] for a in plan["assets"]}) == needed
    break_file(jaffle, seed_file, original)
    recovery = pipeline.reexecute(failed.run_id)
    assert recovery.success
    assert jaffle.executed(recovery.run_id) == needed


def test_the_sensor_retries_a_transient_failure_exactly(
    jaffle: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
    pipeline = jaffle.pipeline
    flaky = "select error('connection reset by peer') as order_id\n"
    original = break_file(jaffle, "models/marts/orders.sql", flaky)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    break_file(jaffle, "models/marts/orders.sql", original)  # the network healed
    manifest = jaffle.manifest()
    needed = downstream_buildables(manifest, node_id(manifest, "model.", ".orders"))

    tick = SensorDriver(pipeline).tick()
    assert len(tick.run_requests) == 1, tick.skip_message
    request = tick.run_requests[0]
    assert as_unique_ids({k.to_user_string() for k in request.asset_selection}) == needed
    retry = execute_retry(pipeline, request)
    assert retry.success
    assert jaffle.executed(retry.run_id) == needed
    with pipeline.instance() as instance:
        materialized = {
            e.dagster_event.asset_key.to_user_string()
            for e in instance.all_logs(retry.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        }
    assert as_unique_ids(materialized) == needed


def test_missing_packages_offline_fail_in_one_sentence_naming_them_and_how_to_vendor(
    jaffle: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    shutil.rmtree(jaffle.file("dbt_packages"))
    # No package hub here: a proxy on a closed local port makes that certain and fast.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert cli_main(["prepare"]) == 2
    err = capsys.readouterr().err
    assert "jaffle-tests/tiny_utils" in err and "Vendor the packages" in err
    assert "dbt_packages/" in err
    assert "Traceback" not in err


def test_lineage_that_contradicts_dbts_dag_fails_the_load_naming_both_nodes(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "loop"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: loop\nversion: '1.0'\nconfig-version: 2\nprofile: loop\n"
    )
    (project / "profiles.yml").write_text(
        "loop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('DUCKDB_PATH') }}\"\n"
    )
    (project / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: loop\n    schema: main\n    tables:\n      - name: b\n"
    )
    (project / "models" / "a.sql").write_text("select * from {{ source('loop', 'b') }}")
    (project / "models" / "b.sql").write_text("select 1 as n from {{ ref('a') }}")
    monkeypatch.setenv("DBT_PROJECT_DIR", str(project))
    from orchestration.definitions import build_definitions
    from orchestration.errors import ConfigurationError
    from tests.conftest import reset_caches

    reset_caches()
    with pytest.raises(ConfigurationError) as raised:
        build_definitions()
    assert "model.loop.a" in str(raised.value) and "model.loop.b" in str(raised.value)
    assert "form a cycle" in str(raised.value)


def dbt_processes_in(folder: Path) -> list[str]:
    """Command lines of live processes that mention ``folder`` (a dbt left running)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "dbt" in text and str(folder) in text:
            found.append(text)
    return found
