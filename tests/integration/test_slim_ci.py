"""Slim CI against stored production state, with real dbt on DuckDB and a real instance.

Production builds the repository's project (``daily_pipeline``); CI builds a copy of it in
``tmp_path`` with one model's SQL changed, as a pull request's checkout would be. Expected
sets come from the production manifest's ``child_map`` (``tests/dbt_graph.py``), never from
the code under test. SQLite instance only: the storage-dependent paths (planner, sensor) are
the production ones, which ``test_recovery_paths.py`` runs on both storages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType

from orchestration.artifacts.store import (
    LATEST_KEY,
    PRODUCTION_STATE_KEY,
    open_store,
    read_run_index,
)
from orchestration.settings import REPO_ROOT
from orchestration.tags import CI_STATE_TAG
from tests.conftest import Pipeline, plan_json, reset_caches, statuses, stored_run_results
from tests.dbt_graph import all_models, model_descendants
from tests.integration.test_retry_sensor import SensorDriver, execute_retry, selected
from tests.project_shapes import use_project

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def slim_ci_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slim CI is off unless ORCHESTRATION_SLIM_CI=1 (settings.py)."""
    monkeypatch.setenv("ORCHESTRATION_SLIM_CI", "1")


CHANGED = "int_deals__converted"
"""Mid-graph: two unchanged parents (read from production), marts downstream."""
CHANGED_PARENTS = {"stg_crm__deals", "int_fx__rates_to_reporting"}
BROKEN_IN_CI = "int_deals__enriched"
"""A child of the changed model, with marts of its own downstream."""


def use_ci_checkout(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project with ``CHANGED`` selecting one more column, as DBT_PROJECT_DIR."""
    project = pipeline.root / "ci_checkout"
    if not project.is_dir():
        shutil.copytree(
            REPO_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs")
        )
        sql = project / "models" / "intermediate" / f"{CHANGED}.sql"
        changed = sql.read_text().replace(
            "select * from converted", "select *, 'ci' as changed_in_ci from converted"
        )
        assert changed != sql.read_text()
        sql.write_text(changed)
    monkeypatch.setenv("DBT_PROJECT_DIR", str(project))
    reset_caches()
    return project


def use_production_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBT_PROJECT_DIR")
    reset_caches()


def executed(pipeline: Pipeline, run_id: str) -> dict[str, str]:
    """Model → status dbt ran it with (skipped ones left out), over the run's invocations."""
    found: dict[str, str] = {}
    for document in stored_run_results(open_store(pipeline.artifacts_uri), run_id):
        found.update({m: s for m, s in statuses(document).items() if s != "skipped"})
    return found


def pointer(pipeline: Pipeline, key: str) -> dict[str, Any]:
    return json.loads(open_store(pipeline.artifacts_uri).get_bytes(key))


def run_tags(pipeline: Pipeline, run_id: str) -> dict[str, str]:
    with pipeline.instance() as instance:
        return dict(instance.get_run_by_id(run_id).tags)


def tables_in(pipeline: Pipeline, schema: str) -> set[str]:
    rows = pipeline.query(
        f"select table_name from information_schema.tables where table_schema = '{schema}'"
    )
    return {name for (name,) in rows}


def test_slim_ci_builds_the_change_defers_to_production_and_recovers_against_the_same_state(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One story, sharing its dbt builds: production succeeds, then fails on the model a
    pull request changes; CI builds the change (and never passes for production); a later
    CI run fails, production recovers and moves on, and the CI run is recovered by the sensor
    and From failure against the production state it started with."""
    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
    first = pipeline.run_job("daily_pipeline")
    assert first.success
    assert pointer(pipeline, PRODUCTION_STATE_KEY)["run_id"] == first.run_id
    pipeline.faults().inject(CHANGED, times=1)
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    latest_before = pointer(pipeline, LATEST_KEY)
    assert latest_before["run_id"] == failed.run_id

    use_ci_checkout(pipeline, monkeypatch)
    ci = pipeline.run_job("slim_ci")
    assert ci.success
    check_exactly_the_change_was_built(pipeline, ci.run_id, state=first.run_id)
    assert pointer(pipeline, LATEST_KEY) == latest_before
    assert pointer(pipeline, PRODUCTION_STATE_KEY)["run_id"] == first.run_id
    check_production_failure_still_stands(pipeline, failed.run_id, built_by=first.run_id)

    pipeline.faults().inject(BROKEN_IN_CI, times=1)
    broken = pipeline.run_job("slim_ci")
    assert not broken.success
    use_production_checkout(monkeypatch)
    recovered = pipeline.reexecute(failed.run_id)  # production's From failure, then it moves on
    assert recovered.success
    assert pointer(pipeline, PRODUCTION_STATE_KEY)["run_id"] == recovered.run_id
    use_ci_checkout(pipeline, monkeypatch)
    check_ci_recovery_keeps_its_state(pipeline, broken.run_id, state=first.run_id)


def check_exactly_the_change_was_built(pipeline: Pipeline, run_id: str, *, state: str) -> None:
    """The changed model and its downstream (from the manifest), in the ci schema, reading
    the unchanged parents from production's."""
    expected = {CHANGED} | model_descendants(CHANGED)
    assert executed(pipeline, run_id) == dict.fromkeys(expected, "success")
    assert run_tags(pipeline, run_id)[CI_STATE_TAG] == state
    assert tables_in(pipeline, "ci") == expected
    assert tables_in(pipeline, "main") >= CHANGED_PARENTS
    ci_rows = pipeline.query(f"select count(*), min(changed_in_ci) from ci.{CHANGED}")
    assert ci_rows == [(pipeline.query(f"select count(*) from main.{CHANGED}")[0][0], "ci")]


def check_production_failure_still_stands(
    pipeline: Pipeline, failed_run: str, *, built_by: str
) -> None:
    """Trust: a CI success on the failed model changes nothing production's recovery reads —
    the plan, the asset record, the sensor."""
    rerun = {asset["key"]: asset["reason"] for asset in plan_json(failed_run)["assets"]}
    assert rerun[CHANGED] == "errored"
    assert set(rerun) >= model_descendants(CHANGED)
    with pipeline.instance() as instance:
        record = instance.get_asset_records([AssetKey(CHANGED)])[0].asset_entry
    assert record.last_run_id == failed_run
    assert record.last_materialization.run_id == built_by
    [request] = SensorDriver(pipeline).tick().run_requests
    assert selected(request) >= {CHANGED} | model_descendants(CHANGED)
    assert not any(key.startswith("ci/") for key in selected(request))


def check_ci_recovery_keeps_its_state(pipeline: Pipeline, broken_run: str, *, state: str) -> None:
    """The failed CI run's plan, the sensor's retry (which fails once more) and the UI's From
    failure of that retry: exactly the broken model and its downstream, against ``state``
    although production has moved on."""
    to_redo = {BROKEN_IN_CI} | model_descendants(BROKEN_IN_CI)
    assert executed(pipeline, broken_run)[BROKEN_IN_CI] == "error"
    assert {asset["key"] for asset in plan_json(broken_run)["assets"]} == {
        f"ci/{model}" for model in to_redo
    }
    [request] = SensorDriver(pipeline).tick().run_requests
    assert selected(request) == {f"ci/{model}" for model in to_redo}
    pipeline.faults().inject(BROKEN_IN_CI, times=1)
    retry = execute_retry(pipeline, request)
    assert not retry.success
    assert run_tags(pipeline, retry.run_id)[CI_STATE_TAG] == state
    assert executed(pipeline, retry.run_id) == {BROKEN_IN_CI: "error"}
    resumed = pipeline.reexecute(retry.run_id, job="slim_ci")
    assert resumed.success
    assert run_tags(pipeline, resumed.run_id)[CI_STATE_TAG] == state
    assert executed(pipeline, resumed.run_id) == dict.fromkeys(to_redo, "success")
    assert tables_in(pipeline, "ci") == {CHANGED} | model_descendants(CHANGED)


def test_without_production_state_slim_ci_does_what_the_run_config_chose(
    pipeline: Pipeline,
) -> None:
    """Nothing stored yet and ``skip`` chosen: a clear line, nothing built, nothing stored."""
    config = {"ops": {"slim_ci_dbt_models": {"config": {"without_production_state": "skip"}}}}
    ci = pipeline.run_job("slim_ci", run_config=config)
    assert ci.success
    assert run_tags(pipeline, ci.run_id)[CI_STATE_TAG] == "none"
    assert read_run_index(open_store(pipeline.artifacts_uri), ci.run_id).invocations == ()
    with pipeline.instance() as instance:
        messages = [entry.user_message for entry in instance.all_logs(ci.run_id)]
    assert any("no production state" in message for message in messages), messages


def test_production_jobs_never_select_ci_assets_and_slim_ci_selects_only_them(
    pipeline: Pipeline,
) -> None:
    from orchestration.definitions import build_definitions

    defs = build_definitions()
    for name in ("daily_pipeline", "weekly_full_refresh", "recover_from_artifacts"):
        layer = defs.resolve_job_def(name).asset_layer
        assert not any(key.path[0] == "ci" for key in layer.executable_asset_keys), name
    ci_keys = defs.resolve_job_def("slim_ci").asset_layer.executable_asset_keys
    assert {tuple(key.path) for key in ci_keys} == {("ci", model) for model in all_models()}


def test_a_ci_target_that_would_write_production_tables_is_refused_before_building(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jaffle-shop shape uses custom schemas as they are (``marts``, ``staging``): with
    the default CI target (schema ``ci``) its marts would still land in production's."""
    use_project("jaffle_like", pipeline, tmp_path, monkeypatch)
    ci = pipeline.run_job("slim_ci")
    assert not ci.success
    with pipeline.instance() as instance:
        failures = [
            entry.dagster_event.event_specific_data.error.to_string()
            for entry in instance.all_logs(ci.run_id, of_type=DagsterEventType.STEP_FAILURE)
        ]
    assert len(failures) == 1
    assert "refused to build" in failures[0]
    assert '"marts".' in failures[0]
    assert "DBT_CI_TARGET" in failures[0]
    assert read_run_index(open_store(pipeline.artifacts_uri), ci.run_id).invocations == ()
