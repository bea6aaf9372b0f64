"""The asset graph and the dbt-node index, as plain data.

Recovery needs only parent/child edges between asset keys and a way to translate dbt unique_ids
into asset keys and check names. Adapters build both from Dagster's asset graph and the dbt
manifest; keeping them as plain mappings makes the planner testable on 10,000-node graphs in
milliseconds. A plain BFS over a children map is all we need: building a networkx graph of 10k
nodes alone costs ~0.7 s.

Asset keys are strings in Dagster's user-string form (``"crm/deals"``, ``"stg_crm__deals"``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property

from orchestration.artifacts.run_results import MATERIALIZING_RESOURCE_TYPES, resource_type_of
from orchestration.errors import PlanError
from orchestration.recovery.batches import MicrobatchConfig


@dataclass(frozen=True)
class AssetGraph:
    """Parent edges between asset keys; every key is present, roots map to an empty set."""

    parents: Mapping[str, frozenset[str]]

    @classmethod
    def from_parents(cls, parents: Mapping[str, Iterable[str]]) -> AssetGraph:
        """Build a graph, adding parents nobody declared as roots.

        An asset's parents can be outside the set we were given (a source, an external asset,
        an asset of another code location); treating them as roots keeps the children map
        complete instead of failing on a lookup later.
        """
        normalised: dict[str, frozenset[str]] = {}
        for key, key_parents in parents.items():
            frozen = frozenset(key_parents)
            if key in frozen:
                raise PlanError(
                    f"asset {key!r} lists itself as a parent; fix the asset definitions "
                    "(an asset graph must be acyclic)"
                )
            normalised[key] = frozen
        for key_parents in list(normalised.values()):
            for parent in key_parents:
                if parent not in normalised:
                    normalised[parent] = frozenset()
        return cls(parents=normalised)

    @cached_property
    def children(self) -> Mapping[str, tuple[str, ...]]:
        """Child edges, computed once per graph; sorted so traversals are deterministic."""
        children: dict[str, list[str]] = {key: [] for key in self.parents}
        for key, key_parents in self.parents.items():
            for parent in key_parents:
                children.setdefault(parent, []).append(key)
        return {key: tuple(sorted(keys)) for key, keys in children.items()}

    @cached_property
    def _rank(self) -> Mapping[str, int]:
        """A position for every key in one fixed topological order (Kahn, sorted tie-breaks).

        Computed once, so ordering any subset is a C-speed ``sorted`` by rank rather than
        another graph walk per plan.
        """
        children = self.children
        indegree = {key: len(parents) for key, parents in self.parents.items()}
        queue = deque(sorted(key for key, degree in indegree.items() if degree == 0))
        rank: dict[str, int] = {}
        while queue:
            key = queue.popleft()
            rank[key] = len(rank)
            for child in children[key]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    queue.append(child)
        if len(rank) != len(indegree):
            stuck = sorted(key for key in indegree if key not in rank)[:5]
            raise PlanError(
                f"the asset graph has a cycle through {', '.join(stuck)}; "
                "fix the asset dependencies before planning a retry"
            )
        return rank

    def __contains__(self, key: object) -> bool:
        return key in self.parents

    def __len__(self) -> int:
        return len(self.parents)

    def downstream(
        self,
        keys: Iterable[str],
        *,
        within: AbstractSet[str] | None = None,
        include_self: bool = True,
    ) -> set[str]:
        """Keys reachable from ``keys`` through child edges, optionally kept to ``within``.

        The walk goes through keys outside ``within`` and only the result is restricted, the
        way dbt treats a selection: it keeps transitive edges across unselected nodes, so a
        model two hops below a failure through an unselected model is skipped all the same.
        Keys unknown to the graph have no children; they are returned as themselves.
        """
        starts = set(keys)
        children = self.children
        # Starts are not marked seen up front: a start below another start is downstream too.
        seen: set[str] = set()
        queue = deque(starts)
        while queue:
            for child in children.get(queue.popleft(), ()):
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        if include_self:
            seen |= starts
        return seen if within is None else seen & within

    def topological_order(self, keys: Iterable[str]) -> list[str]:
        """``keys`` parents-first, in one fixed order (the same input gives the same output)."""
        rank = self._rank
        keys = set(keys)
        if keys <= rank.keys():
            if 4 * len(keys) > len(rank):  # most of the graph: filter the whole order instead
                return [key for key in rank if key in keys]
            return sorted(keys, key=rank.__getitem__)
        unknown = len(rank)  # keys the graph does not know go last, by name
        return sorted(keys, key=lambda key: (rank.get(key, unknown), key))

    def nearest_ancestors_in(
        self, targets: AbstractSet[str], *, starts: AbstractSet[str]
    ) -> dict[str, frozenset[str]]:
        """For every key below ``starts``, the nearest ``starts`` above it.

        "Nearest" means reached without passing through another key of ``starts``: for
        ``a (failed) -> b (failed) -> c`` the cause of ``c`` is ``b``, which is what a person
        fixing the failure wants to read. One pass in topological order over the downstream
        set, so it stays linear in the size of the affected subgraph.
        """
        ordered_starts = sorted(starts)
        bit_of = {start: 1 << position for position, start in enumerate(ordered_starts)}
        # Causes travel as bit masks (one bit per start): or-ing ints is far cheaper than set
        # unions, and most keys on a large fan-out share a handful of distinct masks.
        passed_down = dict(bit_of)  # what a key hands its children: itself if a start
        own: dict[str, int] = {}
        parents = self.parents
        for key in self.topological_order(self.downstream(starts, include_self=False)):
            mask = 0
            for parent in parents[key]:
                mask |= passed_down.get(parent, 0)
            own[key] = mask
            if key not in bit_of:
                passed_down[key] = mask
        decoded: dict[int, frozenset[str]] = {}
        result: dict[str, frozenset[str]] = {}
        for key in targets:
            mask = own.get(key, 0)
            if not mask:
                continue
            names = decoded.get(mask)
            if names is None:
                names = decoded[mask] = frozenset(_bits_to_keys(mask, ordered_starts))
            result[key] = names
        return result


def _bits_to_keys(mask: int, keys: list[str]) -> Iterable[str]:
    while mask:
        lowest = mask & -mask
        yield keys[lowest.bit_length() - 1]
        mask ^= lowest


@dataclass(frozen=True)
class CheckRef:
    """The asset check a dbt test becomes in Dagster."""

    asset: str
    check_name: str
    blocking: bool
    """True for ``severity: error`` tests: dagster-dbt makes those blocking checks."""


@dataclass(frozen=True)
class NotAsset:
    """A dbt node Dagster has no asset or check for, and what recovery does about it."""

    unique_id: str
    note: str
    """e.g. "ephemeral model: compiled into the models that ref it"."""
    asset_parents: tuple[str, ...] = ()
    """Asset keys it depends on (directly, or through ephemeral models)."""

    def to_dict(self) -> dict[str, object]:
        return {"unique_id": self.unique_id, "note": self.note}


@dataclass(frozen=True)
class DbtNodeIndex:
    """Translation between dbt unique_ids and Dagster asset keys / checks.

    Built by an adapter from today's manifest and translator; the planner never reads a
    manifest itself, so a run's stored artifacts are always read against the current project
    (nodes that have disappeared since are reported, not guessed at).
    """

    asset_by_unique_id: Mapping[str, str]
    """Models, seeds and snapshots → asset key."""
    test_to_check: Mapping[str, CheckRef]
    """dbt tests → the check they become on the model they are attached to."""
    not_assets: Mapping[str, NotAsset] = field(default_factory=dict)
    """dbt nodes that are no asset or check (ephemeral models, tests on sources, unit tests,
    exposures, semantic models, saved queries, metrics): known, so never "unknown", and named
    in a plan when they sit on a re-run asset."""
    microbatch: Mapping[str, MicrobatchConfig] = field(default_factory=dict)
    """unique_id → today's microbatch config, for every microbatch model."""

    @cached_property
    def unique_ids_by_asset(self) -> Mapping[str, tuple[str, ...]]:
        """Asset key → the materializing dbt nodes behind it (normally exactly one)."""
        by_asset: dict[str, list[str]] = {}
        for unique_id, asset in self.asset_by_unique_id.items():
            if resource_type_of(unique_id) in MATERIALIZING_RESOURCE_TYPES:
                by_asset.setdefault(asset, []).append(unique_id)
        return {asset: tuple(sorted(ids)) for asset, ids in by_asset.items()}

    def not_assets_on(self, keys: AbstractSet[str]) -> tuple[NotAsset, ...]:
        """The non-asset nodes that depend on any of ``keys``, sorted by unique_id."""
        return tuple(
            node
            for _, node in sorted(self.not_assets.items())
            if not keys.isdisjoint(node.asset_parents)
        )
