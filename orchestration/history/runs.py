"""Dagster instance and artifact store → the recovery planner's plain data.

Everything the planner needs about a run comes from three places: the run record (status,
tags, parent), the run's own event log (planned assets, materializations, check evaluations,
failed steps: ``orchestration.history.run_events``), and, where stored, its dbt
``run_results.json``. If the artifact store cannot be read, the plan falls back to the event
log alone and says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.storage.dagster_run import DagsterRun
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.asset_utils import get_asset_check_key_for_test

from orchestration.artifacts.run_results import RunResults, merge_run_results, parse_run_results
from orchestration.artifacts.store import ArtifactStore, find_run_results_keys
from orchestration.dbt.translator import unique_ids_by_asset_key
from orchestration.errors import OrchestrationError, PlanError
from orchestration.history.run_events import read_run_event_facts
from orchestration.recovery import (
    AssetGraph,
    CheckOutcome,
    CheckRef,
    CheckStatus,
    DbtNodeIndex,
    MicrobatchConfig,
    NotAsset,
    RetryPlan,
    RunOutcome,
    RunStatus,
    plan_run_chain,
)
from orchestration.recovery.batches import microbatch_configs
from orchestration.tags import (
    CI_NO_STATE,
    CI_STATE_TAG,
    FULL_REFRESH_TAG,
    PARENT_RUN_TAG,
    RESUME_RETRY_TAG,
    RETRY_OF_TAG,
)

_CHECK_STATUS = {
    None: CheckStatus.NOT_EXECUTED,
    True: CheckStatus.PASSED,
    False: CheckStatus.FAILED,
}

_RUN_STATUS = {
    DagsterRunStatus.SUCCESS: RunStatus.SUCCESS,
    DagsterRunStatus.FAILURE: RunStatus.FAILURE,
    DagsterRunStatus.CANCELED: RunStatus.CANCELED,
}


def recovery_graph(asset_graph: BaseAssetGraph) -> AssetGraph:
    """The Dagster asset graph as plain parents (asset user strings)."""
    return AssetGraph.from_parents(
        {
            key.to_user_string(): [p.to_user_string() for p in asset_graph.get(key).parent_keys]
            for key in asset_graph.get_all_asset_keys()
        }
    )


_last_index: list[tuple[Mapping[str, Any], DagsterDbtTranslator, DbtNodeIndex]] = []


def dbt_node_index(manifest: Mapping[str, Any], translator: DagsterDbtTranslator) -> DbtNodeIndex:
    """The node index of this manifest, built once per manifest (the op and the CLI ask for it
    several times per run; at 10,000 nodes a build is a noticeable fraction of a second).
    The entry holds the manifest itself, so identity can never match a different one."""
    if _last_index and _last_index[0][0] is manifest and _last_index[0][1] is translator:
        return _last_index[0][2]
    index = build_dbt_node_index(manifest, translator)
    _last_index[:] = [(manifest, translator, index)]
    return index


def build_dbt_node_index(
    manifest: Mapping[str, Any], translator: DagsterDbtTranslator
) -> DbtNodeIndex:
    """dbt unique_id ↔ asset key, each test → the check it is in Dagster (dagster-dbt's own
    rule: attached node, single parent or ``meta.dagster.ref``), and the nodes that are
    neither, so that a plan can name them."""
    nodes = manifest["nodes"]
    assets = {
        uid: translator.get_asset_key(node).to_user_string()
        for uid, node in nodes.items()
        if node.get("resource_type") in {"model", "seed", "snapshot"}
        and (node.get("config") or {}).get("materialized") != "ephemeral"
    }
    checks: dict[str, CheckRef] = {}
    for uid, node in nodes.items():
        if node.get("resource_type") != "test":
            continue
        check = get_asset_check_key_for_test(manifest, translator, uid, None)
        asset = check.asset_key.to_user_string() if check else None
        if asset in assets.values():
            severity = str((node.get("config") or {}).get("severity", "error")).lower()
            checks[uid] = CheckRef(asset, check.name, blocking=severity == "error")
    return DbtNodeIndex(
        asset_by_unique_id=assets,
        test_to_check=checks,
        not_assets=_not_assets(manifest, assets, checks),
        microbatch=microbatch_configs(manifest),
    )


_NOT_ASSET_NOTES = {
    "model": "ephemeral model: compiled into the models that ref it, nothing to run",
    "test": "test that is no asset check (on a source, or on no single model): dbt runs it "
    "with the models it selects",
    "unit_test": "unit test: runs before its model is rebuilt",
    "exposure": "exposure: not built; downstream of re-run assets",
    "semantic_model": "semantic model: not built; reads the re-run model",
    "metric": "metric: not built",
    "saved_query": "saved query: not built by the recovery (select it to export)",
}


def _not_assets(
    manifest: Mapping[str, Any], assets: Mapping[str, str], checks: Mapping[str, CheckRef]
) -> dict[str, NotAsset]:
    """Every manifest node that is neither an asset nor a check, with its asset parents
    (through ephemeral models, which dagster-dbt collapses)."""
    groups = ("nodes", "unit_tests", "exposures", "semantic_models", "metrics", "saved_queries")
    everything = {uid: node for group in groups for uid, node in manifest.get(group, {}).items()}

    def asset_parents(uid: str, seen: set[str]) -> set[str]:
        found: set[str] = set()
        for parent in (everything.get(uid) or {}).get("depends_on", {}).get("nodes") or ():
            if parent in assets:
                found.add(assets[parent])
            elif parent in everything and parent not in seen:
                seen.add(parent)
                found |= asset_parents(parent, seen)
        return found

    result: dict[str, NotAsset] = {}
    for uid, node in everything.items():
        kind = node.get("resource_type") or uid.split(".", 1)[0]
        if uid in assets or uid in checks or kind not in _NOT_ASSET_NOTES:
            continue
        parents = tuple(sorted(asset_parents(uid, {uid})))
        result[uid] = NotAsset(uid, _NOT_ASSET_NOTES[kind], parents)
    return result


def parent_run_id(run: DagsterRun) -> str | None:
    return run.parent_run_id or run.tags.get(PARENT_RUN_TAG) or run.tags.get(RETRY_OF_TAG)


def run_lineage(instance: DagsterInstance, run_id: str) -> list[DagsterRun]:
    """The chain root → … → ``run_id``, following parent links (re-executions and our
    sensor's retries alike)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise PlanError(f"No run {run_id!r} in this Dagster instance; check DAGSTER_HOME.")
    chain = [run]
    seen = {run.run_id}
    while (parent_id := parent_run_id(chain[-1])) and parent_id not in seen:
        parent = instance.get_run_by_id(parent_id)
        if parent is None:
            break
        chain.append(parent)
        seen.add(parent_id)
    return list(reversed(chain))


@dataclass
class StoredResults:
    results: RunResults | None
    warnings: list[str] = field(default_factory=list)
    microbatch_configs: dict[str, MicrobatchConfig] | None = None
    """From the manifest stored beside the results, read only when a batch failed."""


def stored_microbatch_configs(
    store: ArtifactStore, run_results_key: str
) -> dict[str, MicrobatchConfig] | None:
    """The microbatch configs of the manifest.json stored beside a run_results.json; None when
    there is none or it cannot be read (the model is then rebuilt whole, and the plan says
    why). Only called when some batch failed: a large manifest is not read for nothing."""
    folder, _, _ = run_results_key.rpartition("/")
    key = f"{folder}/manifest.json" if folder else "manifest.json"
    try:
        return microbatch_configs(json.loads(store.get_bytes(key)))
    except (OrchestrationError, ValueError, TypeError, AttributeError):
        return None


def has_failed_batches(results: RunResults | None) -> bool:
    return results is not None and any(result.batches_failed for result in results.results)


def stored_run_results(store: ArtifactStore | None, run_id: str) -> StoredResults:
    """The run's dbt builds' run_results, merged; a warning instead of an error when the
    store is unreachable or holds nothing, because the event log still gives a plan."""
    if store is None:
        return StoredResults(None)
    try:
        keys = find_run_results_keys(store, run_id)
        parts = [
            parse_run_results(store.get_bytes(key), source=store.describe(key)) for key in keys
        ]
    except OrchestrationError as error:
        return StoredResults(
            None, [f"stored dbt artifacts of run {run_id} unusable, using the event log: {error}"]
        )
    merged = merge_run_results(parts) if parts else None
    configs = stored_microbatch_configs(store, keys[0]) if has_failed_batches(merged) else None
    return StoredResults(merged, microbatch_configs=configs)


def run_outcome(
    instance: DagsterInstance,
    run: DagsterRun,
    *,
    asset_graph: BaseAssetGraph,
    store: ArtifactStore | None,
) -> tuple[RunOutcome, list[str]]:
    """One run as plain data (``orchestration.history.run_events``), plus warnings for the
    plan."""
    resumes_plan = runs_recovery_plan(run)
    facts = read_run_event_facts(instance, run.run_id, look_for_carried_over=not resumes_plan)
    checks = tuple(
        CheckOutcome(
            check.key.asset_key.to_user_string(),
            check.key.name,
            _is_blocking(asset_graph, check.key),
            _CHECK_STATUS[check.passed],
        )
        for check in facts.checks
    )
    stored = stored_run_results(store, run.run_id)
    status = _RUN_STATUS.get(run.status, RunStatus.IN_PROGRESS)
    outcome = RunOutcome(
        run_id=run.run_id,
        status=status,
        planned=frozenset(slim_ci_scope(run, set(facts.planned), stored.results, asset_graph)),
        materialized=facts.materialized,
        checks=checks,
        dbt_results=stored.results,
        failed_steps_assets=frozenset(_step_assets(asset_graph, set(facts.failed_steps))),
        # A run in which our op ran a recovery plan selected what it carried over without
        # deciding it. Runs recorded before carried-over Outputs stopped materializing are
        # recognised by the marker on those materializations.
        resumes_chain=resumes_plan or bool(facts.carried_over),
        microbatch_configs=stored.microbatch_configs,
        full_refresh=runs_full_refresh(run.job_name, run.tags, run.run_config or {}),
    )
    return outcome, stored.warnings


def slim_ci_selected(tags: Mapping[str, str], results: RunResults | None) -> frozenset[str] | None:
    """The dbt nodes a slim CI run told dbt to build, ``None`` for any other run.

    Dagster planned every ``ci/`` asset of a slim CI run; dbt was told ``state:modified+`` (or
    a recovery's plan intersected with it), and the nodes it selected are exactly those in its
    run_results. An unchanged model it never meant to build is not "planned and not
    materialized": it stays production's, read by deferral. Without run_results (dbt died
    first), or without a production state (everything was built): ``None``, all planned counts.
    """
    if tags.get(CI_STATE_TAG) in (None, "", CI_NO_STATE) or results is None:
        return None
    return frozenset(result.unique_id for result in results.results)


def slim_ci_scope(
    run: DagsterRun, planned: set[str], results: RunResults | None, asset_graph: BaseAssetGraph
) -> set[str]:
    """``planned`` without the assets a slim CI run never set out to build (above)."""
    selected = slim_ci_selected(run.tags, results)
    if selected is None:
        return planned
    by_key = {
        key.to_user_string(): uid
        for key, uid in unique_ids_by_asset_key(getattr(asset_graph, "assets_defs", ())).items()
    }
    return {key for key in planned if key not in by_key or by_key[key] in selected}


FULL_REFRESH_JOBS = frozenset({"weekly_full_refresh"})
DBT_OP_NAME = "dbt_models"  # orchestration.dbt.assets.DBT_OP_NAME, without importing the op


def runs_full_refresh(
    job_name: str, tags: Mapping[str, str], run_config: Mapping[str, Any]
) -> bool:
    """Whether a run rebuilt with ``--full-refresh``, so that its retry must too: the weekly
    job, a retry tagged ``orchestration/full_refresh``, or the dbt op's ``full_refresh`` config.
    """
    if job_name in FULL_REFRESH_JOBS or tags.get(FULL_REFRESH_TAG) == "true":
        return True
    config = ((run_config.get("ops") or {}).get(DBT_OP_NAME) or {}).get("config") or {}
    return bool(config.get("full_refresh"))


RETRY_FROM_CONFIG_KEYS = ("retry_from_run_id", "retry_from_artifacts")
"""The dbt op's run config that makes it run the plan of stored artifacts."""


def runs_recovery_plan(run: DagsterRun) -> bool:
    """Whether our dbt op runs a recovery plan in ``run`` and carries over what the plan
    keeps: a *From failure* re-execution (tag ``dagster/is_resume_retry=true``, set by the UI;
    a Python caller passes it) or a run whose op config names stored artifacts.

    The same two conditions as ``orchestration.dbt.selection.choose_selection``; a step
    selection without the tag runs what it selected and decides all of it.
    """
    if run.tags.get(RESUME_RETRY_TAG) == "true":
        return True
    ops = (run.run_config or {}).get("ops") or {}
    return any(
        isinstance(op, Mapping)
        and isinstance(op.get("config"), Mapping)
        and any(op["config"].get(key) for key in RETRY_FROM_CONFIG_KEYS)
        for op in ops.values()
    )


def _is_blocking(asset_graph: BaseAssetGraph, check_key: Any) -> bool:
    try:
        return bool(asset_graph.get_check_spec(check_key).blocking)
    except Exception:  # a check that no longer exists in the code
        return False


def _step_assets(asset_graph: BaseAssetGraph, step_keys: set[str]) -> set[str]:
    """Assets computed by the failed steps (op name == step key for asset jobs)."""
    if not step_keys:
        return set()
    result: set[str] = set()
    for assets_def in getattr(asset_graph, "assets_defs", ()):
        if assets_def.is_executable and assets_def.node_def.name in step_keys:
            result.update(k.to_user_string() for k in assets_def.keys)
    return result


def plan_for_run(
    instance: DagsterInstance,
    run_id: str,
    *,
    asset_graph: BaseAssetGraph,
    index: DbtNodeIndex | None,
    store: ArtifactStore | None,
    graph: AssetGraph | None = None,
) -> RetryPlan:
    """The retry plan for ``run_id`` and its chain: the latest run that planned an asset
    decides it (``orchestration.recovery.plan``)."""
    lineage = run_lineage(instance, run_id)
    outcomes: list[RunOutcome] = []
    warnings: list[str] = []
    for run in lineage:
        outcome, run_warnings = run_outcome(instance, run, asset_graph=asset_graph, store=store)
        outcomes.append(outcome)
        warnings.extend(run_warnings)
    plan = plan_run_chain(graph or recovery_graph(asset_graph), outcomes, index=index)
    if warnings:
        plan = RetryPlan(
            root_run_id=plan.root_run_id,
            parent_run_id=plan.parent_run_id,
            assets=plan.assets,
            carried_over=plan.carried_over,
            unknown_nodes=plan.unknown_nodes,
            warnings=(*plan.warnings, *warnings),
            not_assets=plan.not_assets,
            full_refresh=plan.full_refresh,
        )
    return plan
