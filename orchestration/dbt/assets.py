"""The ``@dbt_assets`` op: every dbt model is an asset, every error-severity test a check.

The op is recovery-aware. It decides which dbt nodes to run, in this order:

1. run config names an earlier run or stored artifacts (``retry_from_run_id`` /
   ``retry_from_artifacts``) → only what those artifacts say did not finish, plus downstream;
2. the run is a UI *Re-execute → From failure* (tag ``dagster/is_resume_retry``) → only the
   recovery plan of the parent chain, never a model that already succeeded in it;
3. the run selects a subset of assets (*From asset failure*, a partial materialization) or
   re-executes selected steps without that tag (*Re-execute selected*) → exactly what it
   selected, even models that succeeded before;
4. otherwise the whole project.
"""

import functools
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, Config, Output
from dagster_dbt import DagsterDbtTranslator, dbt_assets
from pydantic import Field

from orchestration.artifacts.store import ArtifactStore
from orchestration.dbt import argv
from orchestration.dbt.invocation import InvocationOutcome, stream_staged
from orchestration.dbt.microbatch import BatchPhase
from orchestration.dbt.project import load_manifest
from orchestration.dbt.selection import SelectionChoice, choose_selection
from orchestration.dbt.stages import Edge, StagePlan, plan_stages
from orchestration.dbt.translator import LayeredTranslator, unique_ids_by_asset_key
from orchestration.history.runs import dbt_node_index
from orchestration.resources import ArtifactStoreResource
from orchestration.settings import Settings, load_settings
from orchestration.slim_ci.state import record_if_production

DBT_OP_NAME = "dbt_models"


class DbtBuildConfig(Config):
    """Run config of the dbt op (Launchpad → ops → dbt_models → config)."""

    full_refresh: bool = Field(
        default=False, description="Pass --full-refresh (the weekly job sets it)."
    )
    fail_fast: bool = Field(
        default=False,
        description="Pass --fail-fast: stop at the first failure. Recovery treats every node "
        "dbt cut off (even one that had started) as not done.",
    )
    retry_from_run_id: str | None = Field(
        default=None,
        description="Re-run only what this earlier Dagster run's stored dbt artifacts say did "
        "not finish, plus downstream.",
    )
    retry_from_artifacts: str | None = Field(
        default=None,
        description="Like retry_from_run_id, from a run_results.json in the artifact store "
        "(a key such as 'external/nightly/run_results.json'), or a path / s3:// URI under a "
        "prefix listed in ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS — also for dbt runs that "
        "happened outside Dagster. Anything else is refused unread.",
    )


@functools.cache
def translator() -> LayeredTranslator:
    return LayeredTranslator()


def dagster_edges(assets_def: AssetsDefinition) -> list[Edge]:
    """(producer, consumer) dbt unique_ids of every dependency between two assets of the dbt
    op in Dagster's resolved graph (sources resolved by table name included)."""
    uid_by_key = unique_ids_by_asset_key([assets_def])
    return [
        (uid_by_key[dep.asset_key], uid_by_key[spec.key])
        for spec in assets_def.specs
        if spec.key in uid_by_key
        for dep in spec.deps
        if dep.asset_key in uid_by_key
    ]


def stage_plan(manifest: dict[str, Any], assets_def: AssetsDefinition) -> StagePlan:
    """Run order of the op's dbt nodes: dbt's DAG plus the edges only Dagster knows."""
    return plan_stages(manifest, dagster_edges(assets_def))


def run_recovery_aware(
    context: AssetExecutionContext,
    config: DbtBuildConfig,
    store: ArtifactStore,
    manifest: Mapping[str, Any],
    execute: Callable[[SelectionChoice], Iterator[Any]],
) -> Iterator[Any]:
    """The op body wherever dbt runs (locally, or on dbt Cloud: ``orchestration.dbt_cloud``):
    choose the nodes (the order in this module's docstring), let ``execute`` run them, say
    why each asset was rebuilt, and carry over what already succeeded."""
    choice = choose_selection(
        context,
        manifest=manifest,
        translator=translator(),
        store=store,
        retry_from_run_id=config.retry_from_run_id,
        retry_from_artifacts=config.retry_from_artifacts,
    )
    yield from apply_choice(context, choice, execute)


def apply_choice(
    context: AssetExecutionContext,
    choice: SelectionChoice,
    execute: Callable[[SelectionChoice], Iterator[Any]],
) -> Iterator[Any]:
    """Log the plan, let ``execute`` run the chosen nodes, add to each rebuilt asset's Output
    why it was rebuilt, then yield the Outputs of the carried-over assets."""
    memoize_output_asset_keys(context)
    if choice.log_lines:  # one event: each log line is a write to the event log
        context.log.info("\n".join(choice.log_lines))
    if choice.is_empty:
        context.log.info("Nothing to run: every selected dbt node already succeeded.")
    else:
        for event in execute(choice):
            if isinstance(event, Output) and choice.rebuilt_metadata:
                key = context.asset_key_for_output(event.output_name)
                extra = choice.rebuilt_metadata.get(key.to_user_string())
                if extra:
                    event = event.with_metadata({**event.metadata, **extra})
            yield event
    yield from choice.carried_over_outputs(context)


def memoize_output_asset_keys(context: AssetExecutionContext) -> None:
    """Compute the step's output asset keys once, instead of once per Output.

    For every asset Output a step yields, Dagster 1.13 checks that no step-local child was
    yielded first, and recomputes the step's output asset keys to do it: a loop over every
    output of the op that copies the op's whole key set each time. On a one-op dbt build of
    N assets that is O(N²) work per Output, O(N³) per build: 59% of the run worker's CPU on
    a 1,000-model build (py-spy), taken from dbt's threads on a small machine. The answer
    depends only on the step's outputs and the job's asset layer, both fixed for the step,
    so the step's context keeps the first answer (an attribute on this one step's context,
    not a change to Dagster).
    """
    step = context.op_execution_context.get_step_execution_context()
    keys = frozenset(step.get_output_asset_keys())
    step.get_output_asset_keys = lambda: keys  # type: ignore[method-assign]


def default_event_time(settings: Settings, manifest: dict[str, Any]) -> tuple[str, str] | None:
    """The ingested days as the event-time window of a normal build, for projects that have
    microbatch models (others get no ``--event-time-*`` flags at all)."""
    if not dbt_node_index(manifest, translator()).microbatch:
        return None
    return argv.event_time_window(settings.microbatch_days, datetime.now(UTC).date())


def build_choice(
    context: AssetExecutionContext,
    choice: SelectionChoice,
    *,
    settings: Settings,
    manifest: dict[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    **flags: Any,
) -> Iterator[Any]:
    """Run a chosen selection locally: the failed microbatch windows first
    (``orchestration.dbt.microbatch``), then one build of the rest, stage by stage; what lies
    below a model whose windows failed again is left out, as dbt would skip it, and the step
    then fails with that dbt error. ``flags`` go to the build (``full_refresh``, ``fail_fast``;
    slim CI adds ``state_modified``, ``extra``, ``move_latest``)."""
    invocation: dict[str, Any] = {
        "settings": settings,
        "manifest": manifest,
        "translator": translator,
        "store": store,
    }
    stages = stage_plan(manifest, context.assets_def)
    batches = BatchPhase(choice.batch_windows)
    yield from batches.stream(context, **invocation)
    selection = choice.selection
    if batches.failed and selection.unique_ids is not None:
        blocked = stages.downstream(batches.failed)
        selection = argv.Selection(tuple(u for u in selection.unique_ids if u not in blocked))
        context.log.info(f"Left out below {', '.join(sorted(batches.failed))}: batches failed")
    if not selection.is_empty:
        yield from stream_staged(
            context,
            stages=stages,
            selection=selection,
            event_time=default_event_time(settings, manifest),
            outcome=InvocationOutcome(),
            **invocation,
            **flags,
        )
    if batches.error is not None:
        raise batches.error


def build_dbt_assets(settings: Settings) -> Any:
    """The dbt assets for ``settings.dbt_project_dir`` (manifest prepared if stale)."""
    # Parsed when missing or stale; the dict is handed to dagster-dbt so the (large) manifest
    # is read once, not once here and again from the path.
    manifest = load_manifest(settings)

    @dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=translator(),
        name=DBT_OP_NAME,
    )
    def dbt_models(
        context: AssetExecutionContext,
        config: DbtBuildConfig,
        artifacts: ArtifactStoreResource,
    ) -> Iterator[Any]:
        run_settings = load_settings()
        manifest = load_manifest(run_settings)
        store = artifacts.open()

        def execute(choice: SelectionChoice) -> Iterator[Any]:
            return build_choice(
                context,
                choice,
                settings=run_settings,
                manifest=manifest,
                translator=translator(),
                store=store,
                full_refresh=config.full_refresh or choice.full_refresh,
                fail_fast=config.fail_fast,
            )

        yield from run_recovery_aware(context, config, store, manifest, execute)
        # Reached only when every dbt invocation succeeded (a failed one raises).
        if note := record_if_production(store, context.run):
            context.log.info(note)

    return dbt_models


def run_choice(
    context: AssetExecutionContext,
    choice: SelectionChoice,
    *,
    settings: Settings,
    manifest: dict[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    **flags: Any,
) -> Iterator[Any]:
    """``apply_choice`` around ``build_choice``: an already chosen selection, run locally (slim
    CI's op). Raises the first dbt error after streaming everything."""
    execute = functools.partial(
        build_choice,
        context,
        settings=settings,
        manifest=manifest,
        translator=translator,
        store=store,
        **flags,
    )
    yield from apply_choice(context, choice, execute)
