"""Pure builders for dbt command lines and node selections.

Selections are lists of dbt unique_ids. Up to ``threshold`` nodes go on the command line as
``--select``; above it they go into a generated ``selectors.yml`` (``--selector``), because a
recovery of thousands of models would exceed the kernel's argument size limit (one argument
may hold at most 128 KiB on Linux) — dbt itself has no "select from file" flag.

dbt resolves every criterion of a selection by scanning the whole graph, so a list of N nodes
costs N scans: on a 1,000-model project, ``dbt ls`` of 1,346 nodes listed one by one took 25 s,
against 5 s for the whole project. A selection that is most of the project can therefore be
spelled as its *complement* (``Selection.complement``): ``fqn:*`` minus the few nodes left
out — the same nodes, 8 s on that project.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

SELECTOR_NAME = "orchestration_selection"
STATE_MODIFIED = "state:modified+"
"""Slim CI's selection: nodes changed against the production manifest, and their downstream."""


@dataclass(frozen=True)
class Selection:
    """Which dbt nodes an invocation runs. ``None`` = the whole project."""

    unique_ids: tuple[str, ...] | None
    complement: tuple[str, ...] | None = None
    """When set, dbt is told "every node except these" instead of the list: ``fqn:*`` minus
    each of these with ``indirect_selection: cautious`` (so a test goes with them only when all
    its parents do). The caller guarantees that this picks exactly ``unique_ids``."""

    @classmethod
    def everything(cls) -> Selection:
        return cls(None)

    @property
    def is_everything(self) -> bool:
        return self.unique_ids is None

    @property
    def is_empty(self) -> bool:
        return self.unique_ids is not None and not self.unique_ids


def node_selector_value(unique_id: str, manifest: Mapping[str, Any]) -> str:
    """The dbt selector that picks exactly this node: ``fqn:`` is unique per node."""
    resource_type = unique_id.split(".", 1)[0]
    if resource_type in {"exposure", "saved_query"}:
        # Not in nodes/sources; their names are unique per project.
        return f"{resource_type}:{unique_id.rsplit('.', 1)[-1]}"
    node = manifest["nodes"].get(unique_id) or manifest.get("sources", {}).get(unique_id)
    if node is None:
        raise KeyError(unique_id)
    if unique_id.startswith("source."):
        return f"source:{node['source_name']}.{node['name']}"
    return "fqn:" + ".".join(node["fqn"])


def criteria(selection: Selection) -> tuple[str, ...]:
    """The unique_ids dbt gets one criterion each for: the list, or the complement's."""
    if selection.complement is not None:
        return selection.complement
    return selection.unique_ids or ()


def selection_values(selection: Selection, manifest: Mapping[str, Any]) -> list[str]:
    """The selector values of ``criteria(selection)``, sorted: ``resource_type:<type>`` for a
    type whose every node (two or more) is among them, one ``fqn:`` (or ``source:``) value
    per remaining node.

    Why: dbt resolves each criterion by scanning every node of the project, so a list of a
    few hundred costs seconds (200 seeds at 1,000 models: 3 s before dbt starts building,
    once per stage of a seeded project's build). A resource type selects exactly its nodes.
    """
    chosen = set(criteria(selection))
    by_type: dict[str, set[str]] = {}
    for unique_id in manifest["nodes"]:
        by_type.setdefault(unique_id.split(".", 1)[0], set()).add(unique_id)
    values = []
    for resource_type, unique_ids in by_type.items():
        if len(unique_ids) > 1 and unique_ids <= chosen:
            values.append(f"resource_type:{resource_type}")
            chosen -= unique_ids
    return sorted(values + [node_selector_value(uid, manifest) for uid in chosen])


def uses_selector_file(selection: Selection, threshold: int) -> bool:
    return selection.unique_ids is not None and len(criteria(selection)) > threshold


def complement_selectors_yaml(excluded: Sequence[str]) -> str:
    """A selectors.yml with one selector: ``fqn:*`` minus each of ``excluded`` (selector
    values) and the tests whose parents are all among them."""
    exclude = [
        {"method": method, "value": value, "indirect_selection": "cautious"}
        for method, _, value in (v.partition(":") for v in excluded)
    ]
    definition = {"union": [{"method": "fqn", "value": "*"}, {"exclude": exclude}]}
    return json.dumps({"selectors": [{"name": SELECTOR_NAME, "definition": definition}]}, indent=1)


def selectors_yaml(
    values: Sequence[str], indirect_selection: str | None = None, *, state_modified: bool = False
) -> str:
    """A selectors.yml with one selector, the union of ``values`` (JSON is valid YAML), and
    with ``state_modified`` its intersection with ``state:modified+``.

    dbt ignores ``--indirect-selection`` for ``--selector``: a mode other than the default
    goes on every criterion of the definition instead.
    """
    union: list[object] = list(values)
    if indirect_selection:
        union = [
            {"method": method, "value": value, "indirect_selection": indirect_selection}
            for method, _, value in (v.partition(":") for v in values)
        ]
    definition: dict[str, object] = {"union": union}
    if state_modified:
        modified = {"method": "state", "value": "modified", "children": True}
        definition = {"intersection": [definition, modified]}
    return json.dumps(
        {"selectors": [{"name": SELECTOR_NAME, "definition": definition}]},
        indent=1,
    )


def build_args(
    command: str,
    *,
    selection: Selection,
    manifest: Mapping[str, Any],
    threshold: int,
    full_refresh: bool = False,
    fail_fast: bool = False,
    dbt_vars: Mapping[str, Any] | None = None,
    target: str | None = None,
    indirect_selection: str | None = None,
    state_modified: bool = False,
    event_time: tuple[str, str] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """dbt arguments (without the executable) for one invocation.

    ``state_modified`` (slim CI) narrows the selection to ``state:modified+``: the whole
    project becomes ``--select state:modified+``, a list of nodes becomes each node
    intersected with it (``state:modified+,fqn:…``). A recovery of a slim CI run selects
    from Dagster's view of the CI assets, which includes the unchanged ones the first run
    never built; the intersection keeps every retry to changed nodes and their downstream.
    ``event_time`` (start inclusive, end exclusive) bounds the batches of every microbatch
    model the invocation builds: the ingested window on a normal run, one failed window when
    a recovery re-runs only a model's failed batches.
    """
    args = [command]
    if selection.unique_ids is None and state_modified:
        args += ["--select", STATE_MODIFIED]
    elif selection.complement is not None:
        if uses_selector_file(selection, threshold):
            args += ["--selector", SELECTOR_NAME]
        else:
            excluded = selection_values(selection, manifest)
            args += ["--select", "fqn:*", *(["--exclude", *excluded] if excluded else [])]
            args += ["--indirect-selection", "cautious"]
    elif selection.unique_ids is not None:
        if uses_selector_file(selection, threshold):
            args += ["--selector", SELECTOR_NAME]
        else:
            values = selection_values(selection, manifest)
            if state_modified:
                values = [f"{STATE_MODIFIED},{value}" for value in values]
            args += ["--select", *values]
            if indirect_selection:
                args += ["--indirect-selection", indirect_selection]
    if full_refresh:
        args.append("--full-refresh")
    if fail_fast:
        args.append("--fail-fast")
    if event_time is not None:
        start, end = (dbt_event_time(moment) for moment in event_time)
        args += ["--event-time-start", start, "--event-time-end", end]
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars), sort_keys=True)]
    if target:
        args += ["--target", target]
    args += list(extra)
    return args


def dbt_event_time(moment: str) -> str:
    """An ISO timestamp as dbt's ``--event-time-*`` flags accept it: no UTC offset (click's
    DateTime takes ``%Y-%m-%d``, ``%Y-%m-%dT%H:%M:%S`` only; dbt reads a naive value as UTC,
    which is how run_results.json writes batches: ``2026-09-02T00:00:00+00:00``)."""
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S")


def event_time_window(days: int, today: date) -> tuple[str, str] | None:
    """The ``days`` days up to and including ``today`` as an event-time window, or None (0
    days: dbt decides, from ``begin`` on an empty table, else the last batches + lookback).

    Our ingestion rewrites every day of its window on each run, so each run rebuilds the same
    days, and batches do not depend on the hour a run starts (dbt's default end is "now").
    """
    if days <= 0:
        return None
    first = today - timedelta(days=days - 1)
    return first.isoformat(), (today + timedelta(days=1)).isoformat()
