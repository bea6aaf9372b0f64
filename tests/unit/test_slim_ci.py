"""Slim CI's pure parts: its dbt arguments, the production pointers, the CI profile, the key
space and the relation guard. Expected values are written out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestration.artifacts.store import (
    LATEST_KEY,
    PRODUCTION_STATE_KEY,
    InvocationRecord,
    LocalArtifactStore,
    manifest_key,
    read_production_state,
    record_invocation,
    record_production_state,
)
from orchestration.dbt import argv
from orchestration.dbt.profile import write_ci_profile
from orchestration.errors import ArtifactStoreError, ConfigurationError
from orchestration.settings import REPO_ROOT, load_settings
from orchestration.slim_ci.guard import shared_relations
from orchestration.slim_ci.translator import SlimCiTranslator

MANIFEST = {
    "nodes": {
        "model.p.a": {"fqn": ["p", "a"], "resource_type": "model"},
        "model.p.b": {"fqn": ["p", "marts", "b"], "resource_type": "model"},
        "model.p.c": {"fqn": ["p", "marts", "c"], "resource_type": "model"},
    }
}
DEFER = ["--defer", "--state", "/tmp/state"]


def test_a_fresh_slim_ci_build_selects_state_modified_plus_and_defers() -> None:
    args = argv.build_args(
        "build",
        selection=argv.Selection.everything(),
        manifest=MANIFEST,
        threshold=100,
        target="orchestration_ci",
        state_modified=True,
        extra=DEFER,
    )
    assert args == [
        "build",
        "--select",
        "state:modified+",
        "--target",
        "orchestration_ci",
        "--defer",
        "--state",
        "/tmp/state",
    ]


def test_a_slim_ci_recovery_intersects_each_node_with_state_modified_plus() -> None:
    args = argv.build_args(
        "build",
        selection=argv.Selection(("model.p.a", "model.p.b")),
        manifest=MANIFEST,
        threshold=100,
        state_modified=True,
    )
    assert args == ["build", "--select", "state:modified+,fqn:p.a", "state:modified+,fqn:p.marts.b"]
    # Every model: one criterion for the type, intersected the same way.
    every_model = argv.Selection(("model.p.a", "model.p.b", "model.p.c"))
    args = argv.build_args(
        "build", selection=every_model, manifest=MANIFEST, threshold=100, state_modified=True
    )
    assert args == ["build", "--select", "state:modified+,resource_type:model"]


def test_a_large_slim_ci_recovery_intersects_in_the_selectors_file() -> None:
    document = json.loads(argv.selectors_yaml(["fqn:p.a", "fqn:p.marts.b"], state_modified=True))
    assert document["selectors"][0]["definition"] == {
        "intersection": [
            {"union": ["fqn:p.a", "fqn:p.marts.b"]},
            {"method": "state", "value": "modified", "children": True},
        ]
    }


def record(label: str, created_at: float) -> InvocationRecord:
    return InvocationRecord(
        label=label,
        command="build",
        step_key="dbt",
        status="success",
        files=("manifest.json", "run_results.json"),
        created_at=created_at,
    )


def test_a_ci_invocation_is_indexed_but_does_not_move_latest(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    record_invocation(store, "prod", record("dbt_models-1", 10.0))
    record_invocation(store, "ci", record("slim_ci_dbt_models-1", 20.0), move_latest=False)
    assert json.loads(store.get_bytes(LATEST_KEY))["run_id"] == "prod"
    assert manifest_key(store, "ci") == "runs/ci/slim_ci_dbt_models-1/manifest.json"
    assert read_production_state(store) is None
    assert not store.exists(PRODUCTION_STATE_KEY)


def test_the_production_pointer_only_moves_forward(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    record_production_state(store, "newer", created_at=20.0)
    record_production_state(store, "older-but-late", created_at=10.0)
    assert read_production_state(store) == "newer"
    record_production_state(store, "newest", created_at=30.0)
    assert read_production_state(store) == "newest"


def test_an_unreadable_production_pointer_says_what_to_do(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put_bytes(PRODUCTION_STATE_KEY, b"{not json")
    with pytest.raises(ArtifactStoreError, match="production_run_id"):
        read_production_state(store)


def ci_output(folder: Path, profile: str, target: str) -> dict:
    return yaml.safe_load((folder / "profiles.yml").read_text())[profile]["outputs"][target]


def test_the_default_ci_target_is_production_with_schema_ci(tmp_path: Path) -> None:
    settings = load_settings({})
    target = write_ci_profile(settings, tmp_path)
    assert ci_output(tmp_path, "crm_revenue", target) == {
        "type": "duckdb",
        "path": "{{ env_var('DUCKDB_PATH', '../data/warehouse.duckdb') }}",
        "schema": "ci",
        "threads": "{{ env_var('DBT_THREADS', '4') | int }}",
    }
    # The other targets are kept as they are.
    assert ci_output(tmp_path, "crm_revenue", "duckdb")["schema"] == "main"


def test_the_ci_target_follows_dbt_target(tmp_path: Path) -> None:
    target = write_ci_profile(load_settings({"DBT_TARGET": "postgres"}), tmp_path)
    output = ci_output(tmp_path, "crm_revenue", target)
    assert output["type"] == "postgres"
    assert output["schema"] == "ci"
    assert output["dbname"] == "{{ env_var('DBT_POSTGRES_DBNAME', 'warehouse') }}"


def test_a_foreign_profile_gets_its_default_target_with_schema_ci(tmp_path: Path) -> None:
    project = REPO_ROOT / "tests" / "projects" / "jaffle_like"
    target = write_ci_profile(load_settings({"DBT_PROJECT_DIR": str(project)}), tmp_path)
    assert ci_output(tmp_path, "jaffle_like", target) == {
        "type": "duckdb",
        "path": "{{ env_var('JAFFLE_WAREHOUSE', 'jaffle.duckdb') }}",
        "threads": 3,
        "schema": "ci",
    }


def test_a_missing_production_target_names_dbt_ci_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DBT_CI_TARGET"):
        write_ci_profile(load_settings({"DBT_TARGET": "nowhere"}), tmp_path)


def test_ci_assets_are_keyed_under_ci_and_claim_no_production_table() -> None:
    translator = SlimCiTranslator()
    model = {
        "unique_id": "model.p.a",
        "resource_type": "model",
        "name": "a",
        "database": "warehouse",
        "schema": "main",
        "alias": "a",
        "fqn": ["p", "marts", "a"],
        "config": {"materialized": "table"},
    }
    source = {
        "unique_id": "source.p.crm.deals",
        "resource_type": "source",
        "source_name": "crm",
        "name": "deals",
        "database": "warehouse",
        "schema": "raw_crm",
        "fqn": ["p", "crm", "deals"],
        "config": {},
    }
    assert translator.get_asset_key(model).path == ["ci", "a"]
    assert translator.get_group_name(model) == "slim_ci"
    assert "dagster/table_name" not in translator.get_metadata(model)
    # CI reads raw data where production does: sources keep their keys and table names.
    assert translator.get_asset_key(source).path == ["crm", "deals"]
    assert translator.get_metadata(source)["dagster/table_name"] == "warehouse.raw_crm.deals"


def test_the_guard_finds_ci_relations_production_writes_whatever_their_case() -> None:
    production = {
        "nodes": {
            "model.p.a": {"resource_type": "model", "relation_name": '"w"."main"."a"'},
            "model.p.b": {"resource_type": "model", "relation_name": '"w"."marts"."b"'},
            "model.p.e": {"resource_type": "model", "relation_name": None},  # ephemeral
        }
    }
    ci = {
        "nodes": {
            "model.p.a": {"resource_type": "model", "relation_name": '"w"."ci"."a"'},
            "model.p.b": {"resource_type": "model", "relation_name": '"w"."MARTS"."b"'},
            "model.p.e": {"resource_type": "model", "relation_name": None},
            "test.p.t": {"resource_type": "test", "relation_name": '"w"."main"."a"'},
        }
    }
    assert shared_relations(production, ci) == [("model.p.b", '"w"."marts"."b"')]
    assert shared_relations(production, production | {"nodes": {}}) == []
