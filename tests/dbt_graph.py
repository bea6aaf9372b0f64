"""Expected sets computed straight from the manifest's child_map — independent of the code
under test, so recovery assertions do not restate the planner."""

from __future__ import annotations

import json
from collections import deque

from orchestration.settings import REPO_ROOT


def manifest() -> dict:
    return json.loads((REPO_ROOT / "dbt_project" / "target" / "manifest.json").read_text())


def model_id(name: str) -> str:
    return next(
        uid
        for uid in manifest()["nodes"]
        if uid.startswith("model.") and uid.split(".")[-1] == name
    )


def model_descendants(name: str) -> set[str]:
    """Models downstream of model ``name`` (through tests too, as dbt build skips)."""
    data = manifest()
    seen: set[str] = set()
    queue = deque([model_id(name)])
    while queue:
        for child in data["child_map"].get(queue.popleft(), []):
            if child not in seen and (child.startswith("model.") or child.startswith("test.")):
                seen.add(child)
                queue.append(child)
    return {uid.split(".")[-1] for uid in seen if uid.startswith("model.")}


def all_models() -> set[str]:
    return {n["name"] for uid, n in manifest()["nodes"].items() if uid.startswith("model.")}


def dbt_tests() -> dict[tuple[str, str], bool]:
    """``(model, test name) → blocking`` for every dbt test, from the manifest's own fields:
    the model it is attached to and ``config.severity`` (error blocks, warn does not)."""
    data = manifest()
    found: dict[tuple[str, str], bool] = {}
    for node in data["nodes"].values():
        if node["resource_type"] != "test":
            continue
        attached = node.get("attached_node") or node["depends_on"]["nodes"][0]
        model = data["nodes"][attached]["name"]
        found[(model, node["name"])] = node["config"]["severity"].lower() == "error"
    return found
