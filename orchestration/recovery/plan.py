"""The retry planner: which assets to re-run after a failure, and why.

The rule (the README's "The rule, and where we differ on purpose"): for a failed run, or the
chain root → retry → retry …, the *latest* run of the chain that planned an asset decides it. The
asset is done only if that run materialized it with all its blocking checks passing in that same
run; otherwise it is re-run, and so is everything below it within the root's plan (what a later
run built on top of an asset that is not done was built on stale or missing data). An earlier
success does not count once a later run that planned the asset failed it: an *All steps*
re-execution that breaks a model must re-run that model, not carry over the older build.
Warn-severity checks never trigger a re-run. For a single run that is Dagster's
``FROM_ASSET_FAILURE`` and a superset of ``dbt retry`` (which re-runs a failed test but not the
model it tests).

Each planned asset carries a ``Reason`` taken from the latest run of the chain that planned it,
so people reading a plan (CLI, run tags, sensor skip reasons) see why it is there.

Three entry points share that one rule:

- ``plan_run_chain``: from what Dagster recorded (event log + stored run_results.json);
- ``plan_from_run_results``: from a run_results.json alone (dbt outside Dagster, or a run whose
  event log is gone), turned into a ``RunOutcome`` and planned like any run;
- ``plan_from_asset_states``: from the latest per-asset state, for the sensor, which looks at
  the whole asset graph rather than at one run.

Pure and fast: plain sets and one BFS over a children map, no I/O, no Dagster import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from orchestration.artifacts.run_results import (
    MATERIALIZING_RESOURCE_TYPES,
    MODEL_ERROR_STATUSES,
    MODEL_OK_STATUSES,
    TEST_FAILED_STATUSES,
    NodeResult,
    RunResults,
)
from orchestration.errors import PlanError
from orchestration.recovery.batches import (
    BatchWindow,
    MicrobatchConfig,
    batch_windows,
    config_change,
    describe_windows,
)
from orchestration.recovery.graph import AssetGraph, DbtNodeIndex, NotAsset
from orchestration.recovery.outcome import CheckOutcome, CheckStatus, RunOutcome, RunStatus

PREVIEW_KEYS = 5
"""How many keys a warning names before it says "and N more"."""

_PASSING = frozenset({"pass", "warn"})
_TEST_STATUS_TO_CHECK = {
    "pass": CheckStatus.PASSED,
    "warn": CheckStatus.PASSED,  # a warning never blocks, whatever the test's severity
    "fail": CheckStatus.FAILED,
    "error": CheckStatus.ERRORED,
    "runtime error": CheckStatus.ERRORED,
    "skipped": CheckStatus.NOT_EXECUTED,
}


class Reason(StrEnum):
    """Why an asset is in a retry plan (ordered from most to least direct)."""

    ERRORED = "errored"
    """The model/asset errored (dbt status error, or its non-dbt step failed)."""
    BATCHES_FAILED = "batches_failed"
    """Some microbatches of a dbt microbatch model failed: only those event-time windows are
    re-run (``PlannedAsset.batches``), or the whole model when they cannot be trusted."""
    CHECK_FAILED = "check_failed"
    """A blocking check (error-severity test) failed or errored: rebuild the model, re-run tests."""
    CHECK_NOT_EXECUTED = "check_not_executed"
    """Materialized, but a blocking check never ran, so the data was never vouched for."""
    UPSTREAM_FAILED = "upstream_failed"
    """Skipped because an upstream failed (``caused_by`` names it)."""
    FAIL_FAST = "fail_fast"
    """Cut off by ``--fail-fast``, including a node that had started and was cancelled."""
    NOT_REACHED = "not_reached"
    """Planned, no result at all: the run died, was killed or was canceled first."""
    DOWNSTREAM = "downstream"
    """Not failed itself (or finished by the latest run that planned it), but downstream of a
    failure: the sensor's whole-graph downstream, or a chain asset built on one not done."""


_CAUSING_REASONS = frozenset({Reason.ERRORED, Reason.BATCHES_FAILED, Reason.CHECK_FAILED})
"""Reasons that make downstream assets skip; the others are consequences, not causes."""


@dataclass(frozen=True)
class PlannedAsset:
    """One asset to re-run, with the reason observed in ``run_id``."""

    key: str
    reason: Reason
    detail: str
    caused_by: tuple[str, ...] = ()
    run_id: str | None = None
    """The run where this was observed; None for assets that are only downstream of a failure."""
    batches: tuple[BatchWindow, ...] = ()
    """``BATCHES_FAILED``: the event-time windows to re-run; empty = the whole model."""

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "reason": self.reason.value,
            "detail": self.detail,
            "caused_by": list(self.caused_by),
            "run_id": self.run_id,
            "batches": [window.to_dict() for window in self.batches],
        }


class CarriedOver(NamedTuple):
    """An in-scope asset left out because it succeeded in ``run_id``.

    A named tuple, not a dataclass: a plan of a large failed run carries over nearly every
    asset, and 10,000 frozen dataclasses cost 10 ms to build (a named tuple 4 ms).
    """

    key: str
    run_id: str

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "run_id": self.run_id}


@dataclass(frozen=True)
class UnknownNode:
    """A dbt node in the artifacts that today's manifest does not know (removed or renamed)."""

    unique_id: str
    status: str

    def to_dict(self) -> dict[str, object]:
        return {"unique_id": self.unique_id, "status": self.status}


@dataclass(frozen=True)
class RetryPlan:
    """The assets to re-run (parents first), what is carried over, and what could not be placed."""

    root_run_id: str | None
    parent_run_id: str | None
    """The latest run of the chain: the one a re-execution is launched from."""
    assets: tuple[PlannedAsset, ...]
    carried_over: tuple[CarriedOver, ...]
    unknown_nodes: tuple[UnknownNode, ...] = ()
    warnings: tuple[str, ...] = ()
    not_assets: tuple[NotAsset, ...] = ()
    """dbt nodes on re-run assets that are no Dagster asset (named, never silently dropped)."""
    full_refresh: bool = False
    """The failed run rebuilt with ``--full-refresh`` (a ``weekly_full_refresh``), so the retry
    passes it too: an incremental model must not append to a table the refresh meant to
    rebuild. Narrowed microbatch windows are the exception (see ``orchestration.dbt``)."""

    @cached_property
    def batch_windows(self) -> dict[str, tuple[BatchWindow, ...]]:
        """Asset key → the event-time windows to re-run, for assets narrowed to batches."""
        return {asset.key: asset.batches for asset in self.assets if asset.batches}

    @cached_property
    def keys(self) -> frozenset[str]:
        """The asset keys to re-run, for building a selection."""
        return frozenset(asset.key for asset in self.assets)

    @property
    def is_empty(self) -> bool:
        return not self.assets

    def reason_counts(self) -> dict[Reason, int]:
        """How many planned assets have each reason, in ``Reason``'s order."""
        counts = Counter(asset.reason for asset in self.assets)
        return {reason: counts[reason] for reason in Reason if counts[reason]}

    def summary(self) -> str:
        """One line for logs, run tags and sensor skip reasons.

        e.g. ``3 to re-run (1 errored, 2 upstream_failed); 12 carried over``.
        """
        if self.assets:
            counts = self.reason_counts().items()
            reasons = ", ".join(f"{count} {reason}" for reason, count in counts)
            line = f"{len(self.assets)} to re-run ({reasons})"
        else:
            line = "nothing to re-run"
        line += f"; {len(self.carried_over)} carried over"
        if self.batch_windows:
            count = sum(w.batches for ws in self.batch_windows.values() for w in ws)
            line += f"; {count} microbatches"
        if self.full_refresh:
            line += "; with --full-refresh"
        if self.unknown_nodes:
            line += f"; {len(self.unknown_nodes)} unknown dbt nodes"
        return line

    def to_dict(self) -> dict[str, object]:
        return {
            "root_run_id": self.root_run_id,
            "parent_run_id": self.parent_run_id,
            "summary": self.summary(),
            "assets": [asset.to_dict() for asset in self.assets],
            "carried_over": [carried.to_dict() for carried in self.carried_over],
            "unknown_nodes": [node.to_dict() for node in self.unknown_nodes],
            "not_assets": [node.to_dict() for node in self.not_assets],
            "warnings": list(self.warnings),
            "full_refresh": self.full_refresh,
        }

    def naming_not_assets(self, index: DbtNodeIndex | None) -> RetryPlan:
        """This plan with the non-asset dbt nodes that sit on its re-run assets."""
        if index is None:
            return self
        return replace(self, not_assets=index.not_assets_on(self.keys))


@dataclass(frozen=True)
class AssetState:
    """The latest state of one asset, as the sensor derives it from asset records."""

    key: str
    failed: bool
    reason: Reason
    detail: str
    run_id: str | None
    batches: tuple[BatchWindow, ...] = ()
    """``BATCHES_FAILED``: the failed event-time windows (empty: rebuild the whole model)."""


def plan_run_chain(
    graph: AssetGraph,
    chain: Sequence[RunOutcome],
    *,
    index: DbtNodeIndex | None = None,
) -> RetryPlan:
    """Plan a retry of a failed run or of a chain root → retry → retry …, root first.

    ``index`` translates the runs' dbt results into asset keys; without it, reasons come from
    the event log alone (a dbt model that errored then reads as NOT_REACHED or
    UPSTREAM_FAILED rather than ERRORED, and fail-fast cut-offs cannot be recognised).
    """
    if not chain:
        raise PlanError("there is no run to plan a retry for: the run chain is empty")
    for run in chain:
        if run.status is RunStatus.IN_PROGRESS:
            raise PlanError(
                f"run {run.run_id} has not finished; wait for it to end (or cancel it) "
                "before planning a retry"
            )
    root = chain[0]
    warnings: list[str] = []
    scope = frozenset(root.planned & graph.parents.keys())
    if gone := root.planned - scope:
        warnings.append(
            f"{len(gone)} assets planned by run {root.run_id} are no longer in the asset graph "
            f"and are left out: {preview(gone)}"
        )
    views, latest_position = _chain_views(graph, chain, index, scope)
    if index is None and (with_dbt := [run.run_id for run in chain if run.dbt_results]):
        warnings.append(
            f"runs {', '.join(with_dbt)} have dbt run_results but no dbt node index was given; "
            "reasons come from the event log only"
        )

    planned = _plan_latest_outcomes(graph, views, latest_position, scope)

    unknown: dict[str, UnknownNode] = {}
    reported_by: list[str] = []
    if index is not None:
        for view in views:
            if found := _unknown_nodes(index, view.run.dbt_results):
                reported_by.append(view.run.run_id)
            for node in found:
                unknown.pop(node.unique_id, None)
                unknown[node.unique_id] = node  # the latest status wins
    if unknown:
        warnings.append(_unknown_warning(unknown.values(), reported_by))

    return RetryPlan(
        root_run_id=root.run_id,
        parent_run_id=chain[-1].run_id,
        assets=tuple(planned[key] for key in graph.topological_order(planned)),
        carried_over=_carried_over(graph, views, latest_position, planned.keys()),
        unknown_nodes=tuple(unknown.values()),
        warnings=tuple(warnings),
        full_refresh=any(run.full_refresh for run in chain),
    ).naming_not_assets(index)


def _carried_over(
    graph: AssetGraph,
    views: Sequence[_RunView],
    latest_position: Mapping[str, int],
    planned: AbstractSet[str],
) -> tuple[CarriedOver, ...]:
    """Every in-scope key not re-run, with the run it succeeded in, parents first."""
    run_ids = [view.run.run_id for view in views]
    return tuple(
        CarriedOver(key, run_ids[latest_position[key]])
        for key in graph.topological_order(latest_position.keys() - planned)
    )


def _chain_views(
    graph: AssetGraph,
    chain: Sequence[RunOutcome],
    index: DbtNodeIndex | None,
    scope: frozenset[str],
) -> tuple[list[_RunView], dict[str, int]]:
    """One view per run, and for every key in scope the position of the latest run planning it.

    A run that ``resumes_chain`` planned what it carried over without deciding it: those keys
    (the plan of the runs before it left them out) stay with the runs that decided them, unless
    their step failed in this run after all.
    """
    views: list[_RunView] = []
    latest_position: dict[str, int] = {}
    for run in chain:
        if run.resumes_chain and views:
            not_done, below = _rerun_keys(graph, views, latest_position, scope)
            kept = scope - not_done - below - run.failed_steps_assets
            run = replace(run, planned=run.planned - kept)
        latest_position.update(dict.fromkeys(run.planned & scope, len(views)))  # later wins
        views.append(_RunView(run, index))
    return views, latest_position


def _rerun_keys(
    graph: AssetGraph,
    views: Sequence[_RunView],
    latest_position: Mapping[str, int],
    scope: frozenset[str],
) -> tuple[set[str], set[str]]:
    """(keys their latest planning run did not finish, the keys below those within scope)."""
    if len(views) == 1:  # one run (the usual case): a set difference, at C speed
        not_done = set(latest_position.keys() - views[0].succeeded)
    else:
        not_done = {key for key, at in latest_position.items() if key not in views[at].succeeded}
    below = graph.downstream(not_done, within=scope, include_self=False) - not_done
    return not_done, below


def _plan_latest_outcomes(
    graph: AssetGraph,
    views: Sequence[_RunView],
    latest_position: Mapping[str, int],
    scope: frozenset[str],
) -> dict[str, PlannedAsset]:
    """The planned assets of a chain: the latest run that planned a key decides it.

    Never an earlier success: a key its latest planning run did not finish is re-run with that
    run's reason (it saw the freshest failure). A key its latest run finished but that lies
    below a key not done (within the scope) is re-run as DOWNSTREAM, naming the nearest ones:
    it was built on stale or missing data.
    """
    not_done, below = _rerun_keys(graph, views, latest_position, scope)
    keys_by_view: dict[int, set[str]] = {}
    for key in not_done:
        keys_by_view.setdefault(latest_position[key], set()).add(key)
    planned: dict[str, PlannedAsset] = {}
    for position, keys in keys_by_view.items():
        planned.update(views[position].explain(keys, graph))

    causes = graph.nearest_ancestors_in(below, starts=not_done) if below else {}
    described: dict[frozenset[str], tuple[str, tuple[str, ...]]] = {}  # shared by many keys
    for key in below:
        found = causes.get(key, frozenset())
        if found not in described:
            described[found] = (f"downstream of failed {preview(found)}", tuple(sorted(found)))
        detail, caused_by = described[found]
        planned[key] = PlannedAsset(key, Reason.DOWNSTREAM, detail, caused_by, None)
    return planned


def plan_from_run_results(
    index: DbtNodeIndex,
    graph: AssetGraph,
    results: RunResults,
    *,
    run_id: str,
    microbatch_configs: Mapping[str, MicrobatchConfig] | None = None,
) -> RetryPlan:
    """Plan from a run_results.json alone, by the same rule as ``plan_run_chain``.

    The run's scope is what dbt reported on: the assets of its models, seeds and snapshots,
    plus the asset of any blocking test that failed (a ``dbt test`` invocation builds nothing,
    yet its failed model must be rebuilt). Nodes today's index does not know are reported in
    ``unknown_nodes``, never silently dropped. ``microbatch_configs`` come from the manifest
    stored with the results (without it a partial-success model is rebuilt whole); the retry
    full-refreshes when dbt recorded ``--full-refresh`` in the results' args.
    """
    planned: set[str] = set()
    materialized: set[str] = set()
    warnings: list[str] = []
    failed_run = False
    for result in _latest_results(results):
        if result.status not in MODEL_OK_STATUSES | {"pass", "warn"}:
            failed_run = True
        if result.resource_type in MATERIALIZING_RESOURCE_TYPES:
            asset = index.asset_by_unique_id.get(result.unique_id)
            if asset is not None:
                planned.add(asset)
                if result.status in MODEL_OK_STATUSES:
                    materialized.add(asset)
        elif result.resource_type == "test":
            ref = index.test_to_check.get(result.unique_id)
            if ref is not None and ref.blocking and result.status in TEST_FAILED_STATUSES:
                planned.add(ref.asset)
        elif result.status in MODEL_ERROR_STATUSES | TEST_FAILED_STATUSES:
            warnings.append(
                f"{result.unique_id} ({result.resource_type}) ended '{result.status}'; "
                "it is not an asset, so only the models it held back are re-run"
            )
    outcome = RunOutcome(
        run_id=run_id,
        status=RunStatus.FAILURE if failed_run else RunStatus.SUCCESS,
        planned=frozenset(planned),
        materialized=frozenset(materialized),
        dbt_results=results,
        microbatch_configs=microbatch_configs,
        full_refresh=bool(results.args.get("full_refresh")),
    )
    plan = plan_run_chain(graph, [outcome], index=index)
    return replace(plan, warnings=(*plan.warnings, *warnings))


def plan_from_asset_states(
    graph: AssetGraph,
    failed: Mapping[str, AssetState],
    *,
    exclude: AbstractSet[str] = frozenset(),
) -> RetryPlan:
    """Plan for the sensor: every failed asset and its whole downstream in the asset graph.

    ``exclude`` holds assets already in a queued or in-progress run. They are left out, and so
    is what lies below them unless another failure reaches it too: launching those now would
    read data the other run is about to replace, and if that run fails the sensor sees it again.
    """
    warnings: list[str] = []
    states = {key: state for key, state in failed.items() if state.failed}
    if gone := {key for key in states if key not in graph}:
        warnings.append(
            f"{len(gone)} failed assets are no longer in the asset graph and are left out: "
            f"{preview(gone)}"
        )
    seeds = {key for key in states if key in graph and key not in exclude}
    affected = graph.downstream(seeds) - exclude
    causes = graph.nearest_ancestors_in(affected - seeds, starts=seeds)
    described: dict[frozenset[str], tuple[str, tuple[str, ...]]] = {}  # shared by many keys
    assets: list[PlannedAsset] = []
    for key in graph.topological_order(affected):
        if key in seeds:
            state = states[key]
            assets.append(
                PlannedAsset(key, state.reason, state.detail, (), state.run_id, state.batches)
            )
            continue
        found = causes.get(key, frozenset())
        if found not in described:
            described[found] = (f"downstream of failed {preview(found)}", tuple(sorted(found)))
        detail, caused_by = described[found]
        assets.append(PlannedAsset(key, Reason.DOWNSTREAM, detail, caused_by, None))
    return RetryPlan(
        root_run_id=None,
        parent_run_id=None,
        assets=tuple(assets),
        carried_over=(),
        warnings=tuple(warnings),
    )


_Direct = tuple[Reason, str, tuple[BatchWindow, ...]]
"""A direct reason, its detail and, for ``BATCHES_FAILED``, the windows to re-run."""


class _RunView:
    """One run seen through the rule: which assets succeeded in it, and why the others did not.

    A private working object rather than data: it is built and thrown away inside one plan.
    """

    def __init__(self, run: RunOutcome, index: DbtNodeIndex | None) -> None:
        self.run = run
        self.index = index
        self.dbt_by_asset: dict[str, NodeResult] = {}
        checks = list(run.checks)
        if index is not None and run.dbt_results is not None:
            recorded = {(check.asset, check.check_name) for check in checks}
            for result in _latest_results(run.dbt_results):
                if result.resource_type in MATERIALIZING_RESOURCE_TYPES:
                    asset = index.asset_by_unique_id.get(result.unique_id)
                    if asset is not None:
                        self.dbt_by_asset[asset] = result
                elif result.resource_type == "test" and result.status not in _PASSING:
                    # A passing test holds nothing back: only the others become outcomes.
                    check = _check_from_test(index, result, run.planned, recorded)
                    if check is not None:
                        checks.append(check)
        self.held_back: dict[str, list[CheckOutcome]] = {}
        for check in checks:
            if check.holds_back_its_asset:
                self.held_back.setdefault(check.asset, []).append(check)

    @cached_property
    def succeeded(self) -> frozenset[str]:
        """Materialized in this run with every blocking check passing in this run."""
        return frozenset(key for key in self.run.materialized if key not in self.held_back)

    @cached_property
    def _direct(self) -> dict[str, _Direct]:
        """Reasons that need no graph walk, for every planned asset that did not succeed.

        Only assets with some evidence against them can have one (a held-back check, a dbt
        error, a failed step), so only those are examined: on a large failed run most assets
        were merely skipped.
        """
        errored_in_dbt = {
            key
            for key, result in self.dbt_by_asset.items()
            if result.status in MODEL_ERROR_STATUSES
        }
        evidence = self.held_back.keys() | errored_in_dbt | self.run.failed_steps_assets
        direct: dict[str, _Direct] = {}
        for key in (evidence & self.run.planned) - self.succeeded:
            found = self._direct_reason(key)
            if found is not None:
                direct[key] = found
        return direct

    def _direct_reason(self, key: str) -> _Direct | None:
        checks = self.held_back.get(key, ())
        broken = [check for check in checks if check.status is not CheckStatus.NOT_EXECUTED]
        if broken:
            names = ", ".join(f"{check.check_name} ({check.status})" for check in broken)
            return Reason.CHECK_FAILED, f"blocking check {names}", ()
        if checks and key in self.run.materialized:
            names = ", ".join(check.check_name for check in checks)
            return (
                Reason.CHECK_NOT_EXECUTED,
                f"materialized, but blocking check {names} never ran",
                (),
            )
        result = self.dbt_by_asset.get(key)
        if result is not None and result.status in MODEL_ERROR_STATUSES:
            if result.batches_failed:
                return self._batches_reason(result)
            prefix = "" if result.status == "error" else f"{result.status}: "
            return Reason.ERRORED, prefix + _first_line(result.message, "dbt reported an error"), ()
        if key in self.run.failed_steps_assets and result is None:
            # dbt's own word wins for dbt assets: the whole dbt op is one step.
            detail = f"its step failed in run {self.run.run_id} (see the run's logs)"
            return Reason.ERRORED, detail, ()
        return None

    def _batches_reason(self, result: NodeResult) -> _Direct:
        """A microbatch model some of whose batches failed: those windows, unless its batch
        config changed since (``recovery.batches``), then the whole model, saying why."""
        windows = batch_windows(result.batches_failed)
        failed = sum(window.batches for window in windows)
        total = failed + len(set(result.batches_succeeded))
        detail = f"{failed} of {total} batches failed: {describe_windows(windows)}"
        today = self.index.microbatch.get(result.unique_id) if self.index is not None else None
        why_whole = config_change(
            self.run.microbatch_configs,
            today,
            unique_id=result.unique_id,
            run_id=self.run.run_id,
        )
        if why_whole is None and self.run.full_refresh and not result.batches_succeeded:
            # A full refresh whose first batch failed never recreated the table (dbt then
            # fails every batch): only a whole --full-refresh rebuild does what it meant to.
            why_whole = "no batch of this full refresh succeeded, so the table was not recreated"
        if why_whole is not None:
            return Reason.BATCHES_FAILED, f"{detail}; rebuilt whole: {why_whole}", ()
        return Reason.BATCHES_FAILED, detail, windows

    def explain(self, keys: AbstractSet[str], graph: AssetGraph) -> dict[str, PlannedAsset]:
        """A ``PlannedAsset`` for each of ``keys`` (all planned by this run, none succeeded)."""
        direct = self._direct
        run_id = self.run.run_id
        explained: dict[str, PlannedAsset] = {}
        pending: set[str] = set()
        for key in keys:
            if key in direct:
                reason, detail, windows = direct[key]
                explained[key] = PlannedAsset(key, reason, detail, (), run_id, windows)
            else:
                pending.add(key)
        if not pending:
            return explained
        failures = {key for key, (reason, _, _) in direct.items() if reason in _CAUSING_REASONS}
        causes = graph.nearest_ancestors_in(pending, starts=failures) if failures else {}
        # Thousands of assets below one failure share their causes and their dbt status:
        # derive each distinct combination once.
        every_failure = tuple(sorted(failures))
        derived: dict[tuple[object, ...], tuple[Reason, str, tuple[str, ...]]] = {}
        no_causes: frozenset[str] = frozenset()
        for key in pending:
            found = causes.get(key, no_causes)
            result = self.dbt_by_asset.get(key)
            signature = (found,) if result is None else (found, result.status, result.message)
            known = derived.get(signature)
            if known is None:
                caused_by = tuple(sorted(found))
                reason, detail = self._consequence(result, caused_by)
                if reason is Reason.FAIL_FAST and not caused_by:
                    caused_by = every_failure
                known = derived[signature] = (reason, detail, caused_by)
            explained[key] = PlannedAsset(key, known[0], known[1], known[2], run_id)
        return explained

    def _consequence(
        self, result: NodeResult | None, caused_by: tuple[str, ...]
    ) -> tuple[Reason, str]:
        """Reasons for assets that did not fail themselves but were held back by something."""
        if result is not None and result.cut_off_by_fail_fast:
            return Reason.FAIL_FAST, "cut off by --fail-fast when another node failed"
        if caused_by:
            return Reason.UPSTREAM_FAILED, f"skipped because {preview(caused_by)} failed"
        if result is not None and result.status == "skipped":
            return Reason.UPSTREAM_FAILED, _first_line(
                result.message, "skipped by dbt after an upstream node (not an asset) failed"
            )
        if result is not None and result.status in MODEL_OK_STATUSES:
            return (
                Reason.NOT_REACHED,
                f"dbt reported {result.status}, but run {self.run.run_id} recorded no "
                "materialization",
            )
        return Reason.NOT_REACHED, {
            RunStatus.CANCELED: f"run {self.run.run_id} was canceled before reaching it",
            RunStatus.FAILURE: f"run {self.run.run_id} ended before reaching it",
            RunStatus.SUCCESS: f"run {self.run.run_id} succeeded without materializing it",
        }.get(self.run.status, f"run {self.run.run_id} recorded no result for it")


def _check_from_test(
    index: DbtNodeIndex,
    result: NodeResult,
    planned: AbstractSet[str],
    recorded: AbstractSet[tuple[str, str]],
) -> CheckOutcome | None:
    """A check outcome from a dbt test result, where the event log has none.

    The event log wins: dagster-dbt records check evaluations as they stream. The artifacts
    fill the gaps (a run whose event handling died, or a run planned from artifacts only).
    """
    ref = index.test_to_check.get(result.unique_id)
    if ref is None or ref.asset not in planned or (ref.asset, ref.check_name) in recorded:
        return None
    status = _TEST_STATUS_TO_CHECK.get(result.status, CheckStatus.ERRORED)
    return CheckOutcome(ref.asset, ref.check_name, ref.blocking, status)


def _latest_results(results: RunResults) -> Iterable[NodeResult]:
    """One result per node: dbt can list a node twice when an invocation is retried."""
    return results.by_unique_id.values()


def _unknown_nodes(index: DbtNodeIndex, results: RunResults | None) -> list[UnknownNode]:
    """Models, seeds, snapshots and tests of the results that today's index does not know.

    Set differences first (C speed over 10,000s of ids), then a walk over the few left, in the
    results' order. Ids in ``not_assets`` are known to the manifest, just not assets or checks;
    hooks, unit tests and analyses are never assets, so there is nothing to match.
    """
    if results is None:
        return []
    by_id = results.by_unique_id
    left = by_id.keys() - index.asset_by_unique_id.keys() - index.test_to_check.keys()
    left -= index.not_assets.keys()
    if not left:
        return []
    return [
        UnknownNode(unique_id, result.status)
        for unique_id, result in by_id.items()
        if unique_id in left
        and (result.resource_type in MATERIALIZING_RESOURCE_TYPES or result.resource_type == "test")
    ]


def _unknown_warning(unknown: Iterable[UnknownNode], run_ids: Sequence[str]) -> str:
    ids = [node.unique_id for node in unknown]
    return (
        f"{len(ids)} dbt nodes in the run_results of run {', '.join(run_ids)} are not in today's "
        f"manifest (removed or renamed since?) and are not re-run: {preview(ids)}"
    )


def _first_line(message: str | None, default: str) -> str:
    for line in (message or "").splitlines():
        if line.strip():
            return line.strip()
    return default


def preview(keys: Iterable[str]) -> str:
    """A short, sorted list of keys for messages: ``a, b, c and 12 more``."""
    ordered = sorted(keys)
    shown = ", ".join(ordered[:PREVIEW_KEYS])
    more = len(ordered) - PREVIEW_KEYS
    return f"{shown} and {more} more" if more > 0 else shown
