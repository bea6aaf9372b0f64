"""From the tick's state to what the retry sensor asks for: chains, reasons, tags, run config.

Plain functions over ``history.tick_state``'s data and the recovery planner; the sensor module wires
them to Dagster. Kept apart so that the rules (how failures group into chains, which reason an
asset gets, what a retry run is tagged with) read in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestration.artifacts.run_results import MODEL_ERROR_STATUSES, NodeResult
from orchestration.history.runs import DBT_OP_NAME, runs_full_refresh
from orchestration.history.tick_state import FailedAsset, FailureKind, RunEvidence, RunInfo
from orchestration.recovery import AssetGraph, AssetState, BatchWindow, Reason, RetryPlan
from orchestration.recovery.batches import batch_windows, describe_windows
from orchestration.recovery.policy import Decision
from orchestration.retry_sensor.alerts import Alert
from orchestration.tags import (
    ATTEMPT_TAG,
    FULL_REFRESH_TAG,
    PLAN_BATCHES_TAG,
    PLAN_REASONS_TAG,
    PLAN_SUMMARY_TAG,
    RETRY_OF_TAG,
    RETRY_ROOT_TAG,
    TRIGGER_TAG,
)

SENSOR_NAME = "retry_failed_assets_sensor"
PLAN_SUMMARY_MAX_CHARS = 200
PLAN_REASONS_MAX_BYTES = 4096
DETAIL_MAX_CHARS = 200

_DIRECT_REASONS = frozenset(
    {Reason.ERRORED, Reason.BATCHES_FAILED, Reason.CHECK_FAILED, Reason.CHECK_NOT_EXECUTED}
)


@dataclass(frozen=True)
class Chain:
    """The failed assets that belong to one failure chain (root → retry → retry …)."""

    root: str
    failed: Mapping[str, FailedAsset]
    runs: tuple[RunInfo, ...]
    """Runs of the chain the sensor knows: those owning failed assets and earlier retries."""

    @property
    def latest(self) -> RunInfo:
        """The newest run of the chain: the one a retry continues from."""
        return max(self.runs, key=lambda run: (run.created_at, run.attempt))

    @property
    def attempt(self) -> int:
        """Retries already made: the highest attempt tag of any run of the chain."""
        return max(run.attempt for run in self.runs)

    @property
    def failed_run_ids(self) -> list[str]:
        return sorted({asset.run_id for asset in self.failed.values()})


def group_chains(
    failed: Mapping[str, FailedAsset],
    runs: Mapping[str, RunInfo],
    retries_by_root: Mapping[str, Iterable[RunInfo]] | None = None,
) -> dict[str, Chain]:
    """Failed assets grouped by the chain of the run they failed in."""
    assets_by_root: dict[str, dict[str, FailedAsset]] = {}
    runs_by_root: dict[str, dict[str, RunInfo]] = {}
    for key, asset in failed.items():
        run = runs[asset.run_id]
        root = run.chain_root
        assets_by_root.setdefault(root, {})[key] = asset
        runs_by_root.setdefault(root, {})[run.run_id] = run
    for root, retries in (retries_by_root or {}).items():
        if root in runs_by_root:
            for run in retries:
                runs_by_root[root].setdefault(run.run_id, run)
    return {
        root: Chain(root, assets_by_root[root], tuple(runs_by_root[root].values()))
        for root in sorted(assets_by_root)
    }


def asset_states(
    assets: Iterable[FailedAsset],
    *,
    evidence: Mapping[str, RunEvidence],
    runs: Mapping[str, RunInfo],
    graph: AssetGraph,
    unique_ids: Mapping[str, str],
    step_assets: Mapping[str, frozenset[str]],
) -> dict[str, AssetState]:
    """An ``AssetState`` (reason + detail) for each failed asset, from its run's evidence.

    Direct reasons first (a dbt error, a failed non-dbt step, a failed or unexecuted blocking
    check, a fail-fast cut-off); the rest were held back by a failure above them in the same
    run (UPSTREAM_FAILED, naming it) or never reached (NOT_REACHED).
    """
    states: dict[str, AssetState] = {}
    pending: dict[str, FailedAsset] = {}
    for asset in assets:
        found = _direct_reason(asset, evidence.get(asset.run_id), unique_ids, step_assets)
        if found is None:
            pending[asset.key] = asset
        else:
            reason, detail, windows = found
            states[asset.key] = AssetState(asset.key, True, reason, detail, asset.run_id, windows)
    causing = {
        key
        for key, state in states.items()
        if state.reason in (Reason.ERRORED, Reason.BATCHES_FAILED, Reason.CHECK_FAILED)
    }
    causes = graph.nearest_ancestors_in(set(pending), starts=causing) if causing else {}
    for key, asset in pending.items():
        above = sorted(causes.get(key, ()))
        run = runs.get(asset.run_id)
        if above:
            shown = ", ".join(above[:5]) + (f" and {len(above) - 5} more" if len(above) > 5 else "")
            reason, detail = Reason.UPSTREAM_FAILED, f"skipped because {shown} failed"
        elif run is not None and run.status.value == "CANCELED":
            reason, detail = Reason.NOT_REACHED, f"run {asset.run_id} was canceled before it"
        else:
            reason, detail = Reason.NOT_REACHED, f"run {asset.run_id} ended before reaching it"
        states[key] = AssetState(key, True, reason, detail, asset.run_id)
    return states


def _direct_reason(
    asset: FailedAsset,
    evidence: RunEvidence | None,
    unique_ids: Mapping[str, str],
    step_assets: Mapping[str, frozenset[str]],
) -> tuple[Reason, str, tuple[BatchWindow, ...]] | None:
    """A failed asset's own reason, or None when something upstream held it back. A
    partial-success microbatch model is failed like any errored model, narrowed to the event-time
    windows of its failed batches (the retry's op re-checks them against today's config)."""
    checks = ", ".join(asset.checks)
    if asset.kind is FailureKind.CHECK_FAILED:
        return Reason.CHECK_FAILED, f"blocking check {checks} failed in run {asset.run_id}", ()
    if asset.kind is FailureKind.CHECK_NOT_EXECUTED:
        return (
            Reason.CHECK_NOT_EXECUTED,
            f"materialized, but blocking check {checks} never ran (run {asset.run_id} failed)",
            (),
        )
    if evidence is None:
        return None
    result: NodeResult | None = None
    unique_id = unique_ids.get(asset.key)
    if unique_id is not None and evidence.dbt_results is not None:
        result = evidence.dbt_results.by_unique_id.get(unique_id)
    if result is not None and result.status in MODEL_ERROR_STATUSES:
        if result.batches_failed:
            windows = batch_windows(result.batches_failed)
            detail = f"{result.status}: batches {describe_windows(windows)} failed"
            return Reason.BATCHES_FAILED, detail, windows
        return Reason.ERRORED, _detail(result.message, "dbt reported an error"), ()
    if result is None:
        for step in evidence.failed_steps:
            if asset.key in step_assets.get(step, ()) and unique_id is None:
                message = _detail(evidence.step_errors.get(step), "see the run's logs")
                return Reason.ERRORED, f"step {step} failed: {message}", ()
    if result is not None and result.cut_off_by_fail_fast:
        return Reason.FAIL_FAST, "cut off by --fail-fast when another node failed", ()
    return None


def _detail(message: str | None, default: str) -> str:
    """The first lines of an error, on one line: enough to say why without the whole log."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    text = " · ".join(lines[:3]) if lines else default
    if len(text) > DETAIL_MAX_CHARS:
        text = text[: DETAIL_MAX_CHARS - 1] + "…"
    return text


def plan_reasons_json(plan: RetryPlan, *, max_bytes: int = PLAN_REASONS_MAX_BYTES) -> str:
    """A compact JSON of why each asset is in the run, kept under ``max_bytes``.

    ``{"reasons": {key: reason}, "details": {key: detail}}``; details only for the assets that
    failed themselves (the others were held back by those). When that does not fit, the details
    go first, then keys are dropped (failed ones are kept longest) and ``truncated`` says how
    many of how many are listed and where to read the full plan.
    """
    reasons = {asset.key: asset.reason.value for asset in plan.assets}
    details = {asset.key: asset.detail for asset in plan.assets if asset.reason in _DIRECT_REASONS}
    text = _dump({"reasons": reasons, "details": details})
    if len(text.encode()) <= max_bytes:
        return text
    text = _dump({"reasons": reasons})
    if len(text.encode()) <= max_bytes:
        return text
    ordered = sorted(plan.assets, key=lambda asset: asset.reason is Reason.DOWNSTREAM)
    note = (
        "truncated: {n} of {total} assets listed; the run's plan_summary tag counts them all "
        "and `python -m orchestration plan --run-id <this run>` lists them"
    )
    # Sizes add up entry by entry (one pass): `"key":"reason",` in the compact encoding.
    budget = max_bytes - len(_dump({"reasons": {}, "truncated": note}).encode()) - 16
    kept: dict[str, str] = {}
    used = 0
    for asset in ordered:
        size = len(_dump({asset.key: asset.reason.value}).encode()) - 1  # braces → one comma
        if used + size > budget:
            break
        kept[asset.key] = asset.reason.value
        used += size
    return _dump({"reasons": kept, "truncated": note.format(n=len(kept), total=len(plan.assets))})


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def is_full_refresh(run: RunInfo) -> bool:
    """Whether the failed run rebuilt with ``--full-refresh`` (so its retry must too)."""
    return runs_full_refresh(run.job_name, run.tags, run.run_config)


def retry_tags(
    plan: RetryPlan, *, chain: Chain, attempt: int, full_refresh: bool
) -> dict[str, str]:
    tags = {
        RETRY_OF_TAG: chain.latest.run_id,
        RETRY_ROOT_TAG: chain.root,
        ATTEMPT_TAG: str(attempt),
        PLAN_SUMMARY_TAG: plan.summary()[:PLAN_SUMMARY_MAX_CHARS],
        PLAN_REASONS_TAG: plan_reasons_json(plan),
        TRIGGER_TAG: SENSOR_NAME,
    }
    if full_refresh:
        tags[FULL_REFRESH_TAG] = "true"
    if plan.batch_windows:
        tags[PLAN_BATCHES_TAG] = plan_batches_json(plan)
    return tags


def plan_batches_json(plan: RetryPlan, *, max_bytes: int = PLAN_REASONS_MAX_BYTES) -> str:
    """``{asset: [[start, end], …]}``: the microbatch windows the retry re-runs. Past
    ``max_bytes`` (thousands of scattered failed batches) only the counts are kept."""
    windows = {
        key: [[window.start, window.end] for window in found]
        for key, found in plan.batch_windows.items()
    }
    text = _dump(windows)
    if len(text.encode()) <= max_bytes:
        return text
    return _dump({key: f"{len(found)} windows" for key, found in plan.batch_windows.items()})


def retry_run_config(
    failed_run: RunInfo, selected_ops: Iterable[str], *, full_refresh: bool
) -> dict[str, Any]:
    """The failed run's op config for the ops the retry runs, so a retry builds like the run
    it retries (the same ingestion ``as_of``, ``--full-refresh`` for the weekly job).

    The dbt op keeps ``full_refresh`` only: ``retry_from_*`` would make it plan from artifacts
    instead of running exactly the sensor's selection.
    """
    selected = set(selected_ops)
    ops: dict[str, Any] = {}
    for op, value in (failed_run.run_config.get("ops") or {}).items():
        if op in selected and op != DBT_OP_NAME and isinstance(value, Mapping):
            ops[op] = dict(value)
    if full_refresh and DBT_OP_NAME in selected:
        ops[DBT_OP_NAME] = {"config": {"full_refresh": True}}
    return {"ops": ops} if ops else {}


def give_up_alert(decision: Decision, chain: Chain, seeds: Iterable[str]) -> Alert:
    titles = {
        "give_up_deterministic": "Not retrying: deterministic error",
        "give_up_unknown": "Not retrying: unrecognised error",
        "give_up_budget": "Retries exhausted",
    }
    title = titles.get(decision.kind.value, "Retry sensor gave up")
    return Alert(
        title=f"{title} (run {chain.latest.run_id[:8]})",
        text=decision.reason,
        chain_root=chain.root,
        attempt=decision.attempt,
        kind=decision.kind.value,
        assets=tuple(sorted(seeds)),
    )
