"""Run order for edges Dagster knows and dbt does not (pure: manifest + edges in, stages out).

dagster-dbt gives a model's dependency on a source the source's relation as table-name
metadata, and Dagster resolves a dependency that no asset defines to the asset with that table
name — typically a seed that loads the table the source reads (jaffle-shop's pattern), or a
model that writes it. A source can also name another asset with ``meta.dagster.asset_key``.
dbt's own DAG has none of these edges, so one ``dbt build`` may run the staging model before
the seed: on a fresh warehouse it fails on a missing table, otherwise it reads last run's data,
and Dagster's "yielded before its dependency" check fails the whole step either way.

So every selected node gets a *stage*: the largest number of such extra edges on any path that
leads to it. One ``dbt build`` per stage, in stage order, runs each extra edge's producer in an
earlier invocation than its consumer, and within a stage dbt orders the rest itself. Projects
without extra edges (most) have one stage: one invocation, exactly as before.

A test runs in the stage of its latest parent, so a test over a seed-fed model and another
model never runs before both are built, and a test on a source runs after the node that loads
the source's table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from orchestration.errors import ConfigurationError

BUILDABLE_TYPES = frozenset({"model", "seed", "snapshot"})
"""dbt resource types that write a relation (and are Dagster assets)."""

Edge = tuple[str, str]


@dataclass(frozen=True)
class StagePlan:
    """Stage number of every dbt node (buildable nodes, sources and tests) of a manifest."""

    stage_of: Mapping[str, int]
    extra_edges: frozenset[Edge]
    """(producer, consumer) unique_id pairs that dbt's DAG lacks."""
    parents: Mapping[str, AbstractSet[str]]
    """dbt's parents plus the extra edges' producers, per unique_id."""

    @property
    def staged(self) -> bool:
        return bool(self.extra_edges)

    def split(self, unique_ids: Iterable[str] | None, manifest: Mapping[str, object]) -> list:
        """The selection as one tuple of unique_ids per non-empty stage, in run order.

        ``None`` (the whole project) becomes every buildable node. Data tests are listed
        explicitly in the stage of their latest selected parent; the invocation runs with
        ``--indirect-selection cautious`` so dbt adds no test whose parents are not all built.
        """
        nodes: Mapping[str, Mapping] = manifest["nodes"]  # type: ignore[assignment]
        if unique_ids is None:
            chosen = {
                uid
                for uid, node in nodes.items()
                if node.get("resource_type") in BUILDABLE_TYPES and _enabled(node)
            }
        else:
            chosen = set(unique_ids)
        by_stage: dict[int, set[str]] = {}
        for uid in chosen:
            by_stage.setdefault(self.stage_of.get(uid, 0), set()).add(uid)
        for uid, node in nodes.items():
            if node.get("resource_type") != "test" or uid in chosen:
                continue
            parents = _parents(node)
            if unique_ids is None:
                stage = self.stage_of.get(uid, 0)
            elif parents & chosen:
                stage = max(self.stage_of.get(p, 0) for p in parents & chosen)
            else:
                continue
            by_stage.setdefault(stage, set()).add(uid)
        if unique_ids is None and by_stage:
            # `dbt build` also "builds" exposures and saved queries (no-ops on most adapters):
            # last, after everything they may depend on.
            last = by_stage[max(by_stage)]
            last.update(manifest.get("exposures", {}), manifest.get("saved_queries", {}))
        return [tuple(sorted(by_stage[stage])) for stage in sorted(by_stage)]

    def downstream(self, unique_ids: Iterable[str]) -> set[str]:
        """``unique_ids`` and everything that depends on them, through either kind of edge:
        what a later stage must not run once these failed (dbt would have skipped them)."""
        children: dict[str, list[str]] = {}
        for uid, node_parents in self.parents.items():
            for parent in node_parents:
                children.setdefault(parent, []).append(uid)
        found = set(unique_ids)
        queue = deque(found)
        while queue:
            for child in children.get(queue.popleft(), ()):
                if child not in found:
                    found.add(child)
                    queue.append(child)
        return found


def _enabled(node: Mapping) -> bool:
    return (node.get("config") or {}).get("enabled", True) is not False


def _parents(node: Mapping) -> set[str]:
    return set((node.get("depends_on") or {}).get("nodes") or ())


def dbt_edges(manifest: Mapping[str, object]) -> dict[str, set[str]]:
    """unique_id → its dbt parents (models, seeds, snapshots, sources, tests' parents)."""
    nodes: Mapping[str, Mapping] = manifest["nodes"]  # type: ignore[assignment]
    parents = {uid: _parents(node) for uid, node in nodes.items()}
    for uid in manifest.get("sources", {}):  # type: ignore[union-attr]
        parents.setdefault(uid, set())
    return parents


def relation_producers(manifest: Mapping[str, object]) -> dict[str, str]:
    """source unique_id → the buildable node that writes the relation the source reads."""
    nodes: Mapping[str, Mapping] = manifest["nodes"]  # type: ignore[assignment]
    writers: dict[str, str] = {}
    for uid, node in nodes.items():
        relation = node.get("relation_name")
        if node.get("resource_type") in BUILDABLE_TYPES and relation and _enabled(node):
            writers[_normal(relation)] = uid
    produced: dict[str, str] = {}
    for uid, source in manifest.get("sources", {}).items():  # type: ignore[union-attr]
        relation = source.get("relation_name")
        if relation and _normal(relation) in writers:
            produced[uid] = writers[_normal(relation)]
    return produced


def _normal(relation: str) -> str:
    return relation.replace('"', "").replace("`", "").lower()


def plan_stages(
    manifest: Mapping[str, object],
    dagster_edges: Iterable[Edge] = (),
) -> StagePlan:
    """Stages for ``manifest``, given the (producer, consumer) unique_id edges of Dagster's
    resolved asset graph between dbt nodes (an edge dbt already has costs nothing).

    Raises ``ConfigurationError`` naming two nodes of a cycle when Dagster's edges and dbt's
    DAG together are cyclic: no run order can satisfy both.
    """
    parents = dbt_edges(manifest)
    extra: set[Edge] = {(p, s) for s, p in relation_producers(manifest).items()}
    for producer, consumer in dagster_edges:
        if producer != consumer and not _is_ancestor(producer, consumer, parents):
            extra.add((producer, consumer))
    weighted: dict[str, dict[str, int]] = {uid: dict.fromkeys(ps, 0) for uid, ps in parents.items()}
    for producer, consumer in extra:
        weighted.setdefault(consumer, {})[producer] = 1
        weighted.setdefault(producer, {})
    return StagePlan(
        stage_of=_longest_paths(weighted),
        extra_edges=frozenset(extra),
        parents={uid: frozenset(ps) for uid, ps in weighted.items()},
    )


def _is_ancestor(candidate: str, node: str, parents: Mapping[str, AbstractSet[str]]) -> bool:
    """Whether dbt already runs ``candidate`` before ``node`` (a path in dbt's DAG)."""
    if candidate in parents.get(node, ()):
        return True
    seen = {node}
    queue = deque([node])
    while queue:
        for parent in parents.get(queue.popleft(), ()):
            if parent == candidate:
                return True
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return False


def _longest_paths(weighted: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Kahn's order over weighted parent edges; stage = max(parent stage + weight)."""
    children: dict[str, list[str]] = {uid: [] for uid in weighted}
    for uid, node_parents in weighted.items():
        for parent in node_parents:
            children.setdefault(parent, []).append(uid)
    indegree = {uid: len(weighted.get(uid, {})) for uid in children}
    queue = deque(sorted(uid for uid, degree in indegree.items() if degree == 0))
    stage: dict[str, int] = {}
    while queue:
        uid = queue.popleft()
        node_parents = weighted.get(uid, {})
        stage[uid] = max((stage[p] + w for p, w in node_parents.items()), default=0)
        for child in children[uid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if len(stage) != len(indegree):
        raise _cycle_error({uid for uid in indegree if uid not in stage}, weighted)
    return stage


def _cycle_error(remaining: set[str], weighted: Mapping[str, Mapping[str, int]]) -> Exception:
    """Name one edge of the cycle that dbt does not know about, and what to change."""
    for consumer in sorted(remaining):
        for producer, weight in sorted(weighted.get(consumer, {}).items()):
            if weight and producer in remaining:
                return ConfigurationError(
                    f"Dagster's asset graph and dbt's DAG form a cycle: {consumer} reads what "
                    f"{producer} writes (a source resolved to it by table name or "
                    f"meta.dagster.asset_key), while {producer} depends on {consumer} in dbt. "
                    "No run order satisfies both: point the source at another table (or give "
                    "it a meta.dagster.asset_key of its own), or remove one of the two "
                    "dependencies."
                )
    return ConfigurationError(
        "dbt's DAG has a cycle among " + ", ".join(sorted(remaining)[:5]) + "; fix the project."
    )
