"""Slim CI never writes where production lives.

The default CI target is production's with ``schema: ci``. dbt's own ``generate_schema_name``
then writes a model with a custom schema to ``ci_<custom>``, but a project whose macro uses
custom schemas as they are (jaffle-shop style: ``staging``, ``marts``) would have CI replace
production's tables. So before building, the CI target is parsed and every relation it would
write is compared with those the production target writes; any overlap stops the run, naming
the nodes and what to change. It costs one ``dbt parse`` per CI run — cheap next to rebuilding
a production table from a pull request's code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestration.dbt.project import parse_into
from orchestration.errors import ConfigurationError
from orchestration.settings import Settings

_BUILT = {"model", "seed", "snapshot"}
_SHOWN = 5
PARTIAL_PARSE_CACHE = "slim_ci_partial_parse.msgpack"


def _relations(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Lower-cased relation name → unique_id of every node dbt materializes."""
    return {
        str(node["relation_name"]).lower(): uid
        for uid, node in manifest["nodes"].items()
        if node.get("resource_type") in _BUILT and node.get("relation_name")
    }


def shared_relations(production: Mapping[str, Any], ci: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(CI node, relation) for every relation the CI target would write that production's
    target also writes; empty when CI is safe to build."""
    production_relations = _relations(production)
    return sorted(
        (uid, relation)
        for relation, uid in _relations(ci).items()
        if relation in production_relations
    )


def parse_ci_target(ci_settings: Settings) -> dict[str, Any]:
    """The project parsed for the CI target, in a folder of its own (concurrent CI runs do
    not share one), starting from the last CI parse's partial-parse file: dbt re-parses from
    scratch when the target changes, so production's file is no use, and a full parse costs
    seconds per run."""
    cache = ci_settings.dbt_project_dir / "target" / PARTIAL_PARSE_CACHE
    with tempfile.TemporaryDirectory(prefix="orchestration-ci-parse-") as name:
        folder = Path(name)
        if cache.is_file():
            shutil.copyfile(cache, folder / "partial_parse.msgpack")
        manifest = parse_into(ci_settings, folder)
        fresh = folder / "partial_parse.msgpack"
        if fresh.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            staged = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            shutil.copyfile(fresh, staged)
            os.replace(staged, cache)
        return manifest


def check_ci_target(production_manifest: Mapping[str, Any], ci_settings: Settings) -> None:
    """Raise, before anything is built, when the CI target writes any production relation."""
    ci_manifest = parse_ci_target(ci_settings)
    shared = shared_relations(production_manifest, ci_manifest)
    if not shared:
        return
    shown = ", ".join(f"{uid} → {relation}" for uid, relation in shared[:_SHOWN])
    more = f" and {len(shared) - _SHOWN} more" if len(shared) > _SHOWN else ""
    raise ConfigurationError(
        f"Slim CI refused to build: target {ci_settings.dbt_target} would write production's "
        f"relations ({shown}{more}). Set DBT_CI_TARGET to a target whose schemas differ from "
        "production's, or make the project's generate_schema_name use target.schema for "
        "custom schemas outside production (dbt's default does)."
    )
