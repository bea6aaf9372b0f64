"""Which dbt nodes the dbt op runs: the op's side of recovery (a thin adapter).

The decision itself is the pure planner's (``orchestration.recovery``); this module gathers
its inputs from the run's tags, the instance and the artifact store, and turns the plan into
a dbt selection plus the metadata that tells people why each asset was rebuilt or carried
over.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dagster import AssetExecutionContext, AssetKey, Output
from dagster._core.definitions.source_asset import SYSTEM_METADATA_KEY_SOURCE_ASSET_OBSERVATION
from dagster._core.storage.dagster_run import DagsterRun
from dagster_dbt import DagsterDbtTranslator

from orchestration.artifacts.locations import read_allowed, resolve_location
from orchestration.artifacts.run_results import RunResults, parse_run_results
from orchestration.artifacts.store import ArtifactStore
from orchestration.dbt import argv
from orchestration.dbt.microbatch import tests_on
from orchestration.errors import OrchestrationError
from orchestration.history.runs import (
    dbt_node_index,
    has_failed_batches,
    parent_run_id,
    plan_for_run,
    recovery_graph,
    stored_run_results,
)
from orchestration.recovery import BatchWindow, RetryPlan, plan_from_run_results
from orchestration.recovery.batches import MicrobatchConfig, describe_windows, microbatch_configs
from orchestration.settings import load_settings
from orchestration.tags import (
    CARRIED_OVER_METADATA_KEY,
    PLAN_ORIGIN_METADATA_KEY,
    REASON_DETAIL_METADATA_KEY,
    REBUILT_BECAUSE_METADATA_KEY,
    REBUILT_METADATA_KEY,
    RESUME_ASSET_RETRY_TAG,
    RESUME_RETRY_TAG,
    RETRY_OF_TAG,
)


@dataclass
class SelectionChoice:
    selection: argv.Selection
    log_lines: list[str] = field(default_factory=list)
    # asset user string → metadata added to its Output (why it was rebuilt)
    rebuilt_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    # asset key → run id it succeeded in (left out of this run)
    carried_over: dict[AssetKey, str] = field(default_factory=dict)
    # microbatch model unique_id → the failed event-time windows it re-runs (not in selection)
    batch_windows: dict[str, tuple[BatchWindow, ...]] = field(default_factory=dict)
    # the plan's failed run was a full refresh: the main build passes --full-refresh
    full_refresh: bool = False

    @property
    def is_empty(self) -> bool:
        return self.selection.is_empty and not self.batch_windows

    def narrow_to_batches(
        self, plan: RetryPlan, manifest: Mapping[str, Any], translator: DagsterDbtTranslator
    ) -> None:
        """Take the plan's partial-success microbatch models out of the main build: they re-run
        only their failed windows (``orchestration.dbt.microbatch``), their tests stay in."""
        if self.selection.unique_ids is None or not plan.batch_windows:
            return
        by_asset = dbt_node_index(manifest, translator).unique_ids_by_asset
        selected = set(self.selection.unique_ids)
        for key, windows in plan.batch_windows.items():
            for unique_id in by_asset.get(key, ()):
                if unique_id in selected:
                    self.batch_windows[unique_id] = windows
        if not self.batch_windows:
            return
        tests = {test for uid in self.batch_windows for test in tests_on(uid, manifest)}
        remaining = (selected - self.batch_windows.keys()) | tests
        self.selection = argv.Selection(tuple(sorted(remaining)))
        for unique_id, windows in sorted(self.batch_windows.items()):
            self.log_lines.append(
                f"  batches {unique_id}: only {describe_windows(windows)} (its failed microbatches)"
            )

    def carried_over_outputs(self, context: AssetExecutionContext) -> Iterator[Output]:
        """Outputs for carried-over assets that a later step of this run consumes.

        A *From failure* re-execution re-runs the dbt step and every step downstream of it;
        a downstream step whose input was not yielded is skipped, so such an asset needs an
        Output. But any asset Output makes Dagster record a new materialization, and this
        data was not rebuilt: its latest materialization, data version and check results
        must stay those of the run that built it. Dagster 1.13 has no public way to yield an
        asset's Output without an event; the one it has internally (the marker with which
        source-asset observations skip theirs, ``execute_step``) does exactly that, so the
        Output carries it (``tests/integration/test_carried_over_assets.py`` pins it).
        """
        if not self.carried_over:
            return
        own_keys = op_asset_keys(context)
        graph = context.job_def.asset_layer.asset_graph
        selected = context.selected_asset_keys
        for key, run_id in sorted(self.carried_over.items()):
            if key not in selected:
                continue
            children = graph.get(key).child_keys if graph.has(key) else set()
            if not any(child not in own_keys for child in children):
                continue
            context.log.info(
                f"{key.to_user_string()}: carried over from run {run_id} for the steps "
                "downstream; no new materialization recorded"
            )
            yield Output(
                None,
                output_name=context.assets_def.get_output_name_for_asset_key(key),
                metadata={
                    CARRIED_OVER_METADATA_KEY: run_id,
                    REBUILT_METADATA_KEY: False,
                    SYSTEM_METADATA_KEY_SOURCE_ASSET_OBSERVATION: True,
                },
            )


def _unique_ids(
    keys: Iterable[AssetKey], manifest: Mapping[str, Any], translator: DagsterDbtTranslator
) -> set[str]:
    """The dbt nodes behind ``keys`` (models, seeds, snapshots), from the one node index."""
    by_asset = dbt_node_index(manifest, translator).unique_ids_by_asset
    return {uid for key in keys for uid in by_asset.get(key.to_user_string(), ())}


def op_asset_keys(context: AssetExecutionContext) -> set[AssetKey]:
    """Every asset of the dbt op, selected or not (``assets_def.keys`` is only the subset)."""
    return set(context.assets_def.node_keys_by_output_name.values())


def subset_selection(
    context: AssetExecutionContext,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
) -> argv.Selection:
    """Everything when the op runs whole, else exactly the selected assets' nodes — plus the
    tests behind checks selected without their asset (Dagster's *From asset failure* does
    that for a model that materialized but whose tests never ran, e.g. after --fail-fast)."""
    selected = set(context.selected_asset_keys)
    if selected >= op_asset_keys(context):
        return argv.Selection.everything()
    unique_ids = _unique_ids(selected, manifest, translator)
    lone_checks = {
        (check.asset_key.to_user_string(), check.name)
        for check in context.selected_asset_check_keys
        if check.asset_key not in selected
    }
    if lone_checks:
        index = dbt_node_index(manifest, translator)
        unique_ids |= {
            test_id
            for test_id, ref in index.test_to_check.items()
            if (ref.asset, ref.check_name) in lone_checks
        }
    return argv.Selection(tuple(sorted(unique_ids)))


def is_from_failure(run: DagsterRun) -> bool:
    """Whether the run is a *From failure* re-execution, which runs the chain's plan.

    Only the tag says so: the UI's *From failure* sets ``dagster/is_resume_retry=true`` (so
    must a Python caller, ``execute_job(..., tags={RESUME_RETRY_TAG: "true"})``). A step
    selection alone says nothing: *Re-execute selected* (and ``ReexecutionOptions`` with a
    ``step_selection``) also has a parent and a partial selection, and must run what it
    selected — guessing "from failure" there ran nothing after a successful dbt step.
    """
    return run.tags.get(RESUME_RETRY_TAG) == "true"


def read_location(
    store: ArtifactStore, location: str, *, extra_locations: Sequence[str] = ()
) -> tuple[bytes, str]:
    """Bytes of a run_results.json named by ``retry_from_artifacts``, and its full name.

    Only a key inside the store or a location under ``extra_locations``
    (``ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS``) is read; anything else is refused before
    any read, with a message that says nothing about it (see ``artifacts.locations``).
    """
    allowed = resolve_location(location, store_uri=store.uri, extra_locations=extra_locations)
    return read_allowed(store, allowed), allowed.describe(store)


PLAN_LOG_LINES = 200
"""Rebuilt and kept assets listed each in the op's log (the rest counted): the plan is logged
as one event, and a 10,000-line event helps nobody (``plan --run-id`` lists everything)."""


def _capped(lines: list[str], what: str, plan: RetryPlan) -> list[str]:
    if len(lines) <= PLAN_LOG_LINES:
        return lines
    more = len(lines) - PLAN_LOG_LINES
    return lines[:PLAN_LOG_LINES] + [
        f"  … and {more} more {what} (all of them: python -m orchestration plan --run-id "
        f"{plan.parent_run_id})"
    ]


def _plan_lines(plan: RetryPlan, origin: str) -> list[str]:
    lines = [f"Recovery plan from {origin}: {plan.summary()}"]
    rebuilt = [f"  rebuild {a.key:<40} {a.reason.value:<18} {a.detail}" for a in plan.assets]
    kept = [f"  keep    {c.key:<40} succeeded in run {c.run_id}" for c in plan.carried_over]
    lines += _capped(rebuilt, "to rebuild", plan) + _capped(kept, "kept", plan)
    lines += [f"  WARNING {w}" for w in plan.warnings]
    if plan.unknown_nodes:
        lines.append(
            "  WARNING artifacts name nodes not in today's manifest (not run): "
            + ", ".join(f"{u.unique_id} ({u.status})" for u in plan.unknown_nodes)
        )
    return lines


def _choice_from_plan(
    context: AssetExecutionContext,
    plan: RetryPlan,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    origin: str,
    *,
    carry_over: bool,
) -> SelectionChoice:
    selected = set(context.selected_asset_keys)
    own = op_asset_keys(context)
    to_build = {AssetKey.from_user_string(key) for key in plan.keys} & selected
    unique_ids = sorted(_unique_ids(to_build, manifest, translator))
    choice = SelectionChoice(selection=argv.Selection(tuple(unique_ids)))
    choice.full_refresh = plan.full_refresh
    choice.log_lines = _plan_lines(plan, origin)
    for planned in plan.assets:
        choice.rebuilt_metadata[planned.key] = {
            REBUILT_BECAUSE_METADATA_KEY: planned.reason.value,
            REASON_DETAIL_METADATA_KEY: planned.detail,
            PLAN_ORIGIN_METADATA_KEY: origin,
        }
    if carry_over:
        for carried in plan.carried_over:
            key = AssetKey.from_user_string(carried.key)
            if key in own:
                choice.carried_over[key] = carried.run_id
    choice.narrow_to_batches(plan, manifest, translator)
    return choice


def _instance_plan(
    context: AssetExecutionContext,
    run_id: str,
    *,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
) -> RetryPlan:
    asset_graph = context.job_def.asset_layer.asset_graph
    return plan_for_run(
        context.instance,
        run_id,
        asset_graph=asset_graph,
        index=dbt_node_index(manifest, translator),
        store=store,
    )


def _artifacts_plan(
    context: AssetExecutionContext,
    *,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    retry_from_run_id: str | None,
    retry_from_artifacts: str | None,
) -> tuple[RetryPlan, str]:
    index = dbt_node_index(manifest, translator)
    graph = recovery_graph(context.job_def.asset_layer.asset_graph)
    if retry_from_artifacts:
        extra = load_settings().artifacts_extra_locations
        data, source = read_location(store, retry_from_artifacts, extra_locations=extra)
        results = parse_run_results(data, source=source)
        configs = _configs_beside(store, retry_from_artifacts, results, extra)
        plan = plan_from_run_results(
            index, graph, results, run_id=source, microbatch_configs=configs
        )
        return plan, source
    assert retry_from_run_id
    stored = stored_run_results(store, retry_from_run_id)
    if stored.results is not None:
        plan = plan_from_run_results(
            index,
            graph,
            stored.results,
            run_id=retry_from_run_id,
            microbatch_configs=stored.microbatch_configs,
        )
        return plan, f"stored artifacts of run {retry_from_run_id}"
    # Nothing usable in the store (never uploaded, store down): the event log still knows.
    plan = _instance_plan(
        context, retry_from_run_id, manifest=manifest, translator=translator, store=store
    )
    note = stored.warnings or [f"no stored dbt artifacts for run {retry_from_run_id}"]
    plan = replace(plan, warnings=(*plan.warnings, *note, "planned from the event log"))
    return plan, f"event log of run {retry_from_run_id}"


def _configs_beside(
    store: ArtifactStore, location: str, results: RunResults, extra: Sequence[str]
) -> dict[str, MicrobatchConfig] | None:
    """Microbatch configs of the manifest.json beside an external run_results.json, read
    (through the same allowed-locations check) only when some batch failed; None otherwise
    or when there is none, so a partial-success model is rebuilt whole."""
    if not has_failed_batches(results) or not location.endswith("run_results.json"):
        return None
    beside = location[: -len("run_results.json")] + "manifest.json"
    try:
        data, _ = read_location(store, beside, extra_locations=extra)
        return microbatch_configs(json.loads(data))
    except (OrchestrationError, ValueError, TypeError, AttributeError):
        return None


def choose_selection(
    context: AssetExecutionContext,
    *,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    retry_from_run_id: str | None,
    retry_from_artifacts: str | None,
) -> SelectionChoice:
    """The dbt nodes this invocation runs (see ``orchestration.dbt.assets``)."""
    run = context.run
    if retry_from_run_id or retry_from_artifacts:
        plan, origin = _artifacts_plan(
            context,
            manifest=manifest,
            translator=translator,
            store=store,
            retry_from_run_id=retry_from_run_id,
            retry_from_artifacts=retry_from_artifacts,
        )
        return _choice_from_plan(context, plan, manifest, translator, origin, carry_over=True)
    if is_from_failure(run) and run.parent_run_id:
        plan = _instance_plan(
            context, run.parent_run_id, manifest=manifest, translator=translator, store=store
        )
        return _choice_from_plan(
            context, plan, manifest, translator, f"run {run.parent_run_id}", carry_over=True
        )
    choice = SelectionChoice(selection=subset_selection(context, manifest, translator))
    retry_of = run.tags.get(RETRY_OF_TAG)
    parent = parent_run_id(run)
    if run.tags.get(RESUME_ASSET_RETRY_TAG) == "true" and parent and not retry_of:
        # UI *From asset failure*: Dagster selected the unmaterialized assets, a partial-success
        # microbatch model among them; the parent chain's plan says which batches failed.
        plan = _instance_plan(
            context, parent, manifest=manifest, translator=translator, store=store
        )
        choice.narrow_to_batches(plan, manifest, translator)
    if retry_of:
        # A retry launched by retry_failed_assets_sensor: the selection is already the plan;
        # attach the chain's reasons to each rebuilt asset.
        plan = _instance_plan(
            context, retry_of, manifest=manifest, translator=translator, store=store
        )
        explained = _choice_from_plan(
            context, plan, manifest, translator, f"run {retry_of}", carry_over=False
        )
        choice.rebuilt_metadata = explained.rebuilt_metadata
        choice.log_lines = explained.log_lines
        choice.narrow_to_batches(plan, manifest, translator)
    return choice
