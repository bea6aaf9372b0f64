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
