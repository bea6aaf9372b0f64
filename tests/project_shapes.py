"""The corpus of dbt project shapes under ``tests/projects/`` and an independent oracle.

Each project is ours (written for these tests), shaped like the projects teams bring: the
jaffle-shop pattern of seeds loading the tables their sources read, a vendored package, a
snapshot, versioned / ephemeral / disabled models, exposures, semantic models, unit tests.

Expected sets come from the project's own ``manifest.json`` — dbt's ``child_map`` plus the one
kind of edge Dagster adds (a source whose relation a seed or model writes) — never from the
code under test.
"""

from __future__ import annotations

import json
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration.artifacts.store import open_store
from orchestration.settings import REPO_ROOT
from tests.conftest import Pipeline, reset_caches, stored_run_results

PROJECTS = REPO_ROOT / "tests" / "projects"
BUILDABLE_PREFIXES = ("model.", "seed.", "snapshot.")


@dataclass
class Project:
    """A copy of one corpus project under ``tmp_path``, selected through DBT_PROJECT_DIR."""

    path: Path
    warehouse: Path
    pipeline: Pipeline

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "target" / "manifest.json").read_text())

    def file(self, relative: str) -> Path:
        return self.path / relative

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as connection:
            return connection.execute(sql).fetchall()

    def executed(self, run_id: str, statuses: tuple[str, ...] = ()) -> set[str]:
        """Buildable unique_ids dbt ran (not skipped) in ``run_id``, over every stage;
        only those that ended in one of ``statuses`` when given."""
        documents = stored_run_results(open_store(self.pipeline.artifacts_uri), run_id)
        return {
            result["unique_id"]
            for document in documents
            for result in document["results"]
            if result["unique_id"].startswith(BUILDABLE_PREFIXES)
            and result["status"] != "skipped"
            and (not statuses or result["status"] in statuses)
        }


def use_project(
    name: str, pipeline: Pipeline, root: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    """Copy ``tests/projects/<name>`` (without target/) and point the orchestration at it.

    The project's own profile reads ``JAFFLE_WAREHOUSE``; it is set to a file other than
    our ``DUCKDB_PATH`` so that nothing can pass by writing to our default warehouse.
    """
    path = root / name
    shutil.copytree(PROJECTS / name, path, ignore=shutil.ignore_patterns("target", "logs"))
    warehouse = root / f"{name}.duckdb"
    monkeypatch.setenv("DBT_PROJECT_DIR", str(path))
    monkeypatch.setenv("JAFFLE_WAREHOUSE", str(warehouse))
    reset_caches()
    return Project(path=path, warehouse=warehouse, pipeline=pipeline)


def lineage_children(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """dbt's child_map plus an edge writer → source for each source whose relation a seed,
    model or snapshot of the project writes (what Dagster resolves by table name)."""
    children = {uid: set(kids) for uid, kids in manifest["child_map"].items()}
    writers = {
        node["relation_name"]: uid
        for uid, node in manifest["nodes"].items()
        if uid.startswith(BUILDABLE_PREFIXES) and node.get("relation_name")
    }
    for uid, source in manifest["sources"].items():
        writer = writers.get(source.get("relation_name"))
        if writer:
            children.setdefault(writer, set()).add(uid)
    return children


def downstream_buildables(manifest: dict[str, Any], *starts: str) -> set[str]:
    """``starts`` and every non-ephemeral model, seed and snapshot downstream of them."""
    children = lineage_children(manifest)
    seen = set(starts)
    queue = deque(starts)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return {uid for uid in seen if is_built(manifest, uid)}


def is_built(manifest: dict[str, Any], uid: str) -> bool:
    node = manifest["nodes"].get(uid)
    return (
        node is not None
        and uid.startswith(BUILDABLE_PREFIXES)
        and node["config"].get("materialized") != "ephemeral"
    )


def all_buildables(manifest: dict[str, Any]) -> set[str]:
    return {uid for uid in manifest["nodes"] if is_built(manifest, uid)}


def node_id(manifest: dict[str, Any], prefix: str, name: str) -> str:
    return next(uid for uid in manifest["nodes"] if uid.startswith(prefix) and uid.endswith(name))
