"""``retry_failed_assets_sensor``: automatic recovery of failed assets and their downstream.

Each tick reads the latest state of every asset in a fixed number of batched queries
(``history.tick_state``), groups the failed assets by failure chain (root run → retry …), asks
the retry policy what to do with each chain (``recovery.policy.decide``: budget, backoff, error
kind) and then launches a run of the chain's failed assets plus everything downstream of them in
the asset graph, or says why not — SkipReason text in the UI, and for every give-up (each failed
run of a chain it gives up on), one alert to the webhook from settings. An alert waits in the
cursor's outbox until the receiver accepted it, retried on later ticks with backoff; after
``ALERT_DELIVERY.max_deliveries`` failed attempts the sensor logs one ERROR line and the tick's
SkipReason names the undelivered alert.

Never twice: a retry's ``run_key`` is ``retry:<root>:<attempt>`` (Dagster launches a run key once
per sensor), the typed JSON cursor remembers which failed run got which retry and which give-ups
were alerted (and holds the outbox), and the attempt number counts every retry of the chain
already in the instance, so overlapping ticks, a daemon restart or a second daemon cannot launch
the same retry twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from dagster import (
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph

from orchestration.artifacts.store import ArtifactStore
from orchestration.history.tick_state import (
    QueryLog,
    RunEvidence,
    assets_by_step,
    dbt_adapter_type,
    dbt_unique_ids_by_asset,
    job_asset_keys,
    read_chain_runs,
    read_run_evidence,
    read_tick_state,
)
from orchestration.instance_state import recovery_graph
from orchestration.recovery import plan_from_asset_states
from orchestration.recovery.classify import (
    Classification,
    ErrorKind,
    ErrorPattern,
    classify_many,
    default_patterns,
    load_patterns,
)
from orchestration.recovery.cursor import RetryCursor, gave_up_marker, retry_run_key
from orchestration.recovery.plan import preview
from orchestration.recovery.policy import ChainState, DecisionKind, RetryPolicy, decide
from orchestration.resources import ArtifactStoreResource
from orchestration.retry_sensor.alerts import DeliveryPolicy, deliver_pending_alerts
from orchestration.retry_sensor.chains import (
    SENSOR_NAME,
    asset_states,
    give_up_alert,
    group_chains,
    is_full_refresh,
    retry_run_config,
    retry_tags,
)
from orchestration.settings import Settings, load_settings
from orchestration.warehouse import warehouse_tags

logger = logging.getLogger(__name__)

SHORT_ID_CHARS = 8
ALERT_DELIVERY = DeliveryPolicy(
    max_deliveries=5, backoff_seconds=30.0, backoff_max_seconds=600.0, timeout_seconds=5.0
)
"""One POST per alert per tick (a tick must stay well inside the daemon's sensor timeout), then
30 s, 60 s, … capped at 10 min between ticks: five attempts span about 7.5 minutes."""


def build_sensors(settings: Settings) -> list[SensorDefinition]:
    return [build_retry_sensor(settings)]


def build_retry_sensor(settings: Settings) -> SensorDefinition:
    @sensor(
        name=SENSOR_NAME,
        target=AssetSelection.all(),
        minimum_interval_seconds=settings.retry_sensor_interval_seconds,
        default_status=(
            DefaultSensorStatus.RUNNING
            if settings.retry_sensor_running
            else DefaultSensorStatus.STOPPED
        ),
        description=(
            "Retries failed assets and everything downstream of them, with a budget per failure "
            "chain, exponential backoff and error classification; deterministic errors and "
            "exhausted budgets are reported (SkipReason + webhook alert) instead."
        ),
    )
    def retry_failed_assets_sensor(
        context: SensorEvaluationContext, artifacts: ArtifactStoreResource
    ) -> SensorResult | SkipReason:
        repository = context.repository_def
        tick = run_retry_tick(
            context.instance,
            repository.asset_graph,
            RetryCursor.from_json_with_warning(context.cursor),
            settings=load_settings(),
            now=time.time(),
            open_store=artifacts.open,
            job_assets=job_asset_keys(repository),
        )
        for line in tick.lines:
            context.log.info(line)
        for line in tick.errors:
            context.log.error(line)
        context.log.debug("instance queries this tick: %s", ", ".join(tick.queries))
        context.update_cursor(tick.cursor.to_json())
        if tick.run_requests:
            return SensorResult(run_requests=tick.run_requests)
        return SkipReason("\n".join(tick.lines))

    return retry_failed_assets_sensor


@dataclass
class TickOutcome:
    run_requests: list[RunRequest] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """One line per failure chain (and a first line for a cursor that could not be read)."""
    cursor: RetryCursor = field(default_factory=RetryCursor)
    queries: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Alerts given up on this tick: the sensor logs each as an ERROR."""


def error_patterns(settings: Settings) -> tuple[ErrorPattern, ...]:
    if settings.error_patterns_file is None:
        return default_patterns()
    path = settings.error_patterns_file
    return load_patterns(path.read_text(encoding="utf-8"), source=str(path))


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        backoff_base_seconds=settings.retry_backoff_seconds,
        backoff_factor=settings.retry_backoff_factor,
        backoff_max_seconds=settings.retry_backoff_max_seconds,
        retry_unknown_errors=settings.retry_unknown_errors,
    )


def run_retry_tick(
    instance: DagsterInstance,
    asset_graph: BaseAssetGraph,
    cursor_and_warning: tuple[RetryCursor, str | None],
    *,
    settings: Settings,
    now: float,
    open_store: Callable[[], ArtifactStore] | None = None,
    job_assets: Callable[[str], AbstractSet[str]] | None = None,
) -> TickOutcome:
    """One evaluation of the sensor, as plain inputs and outputs (the sensor is a thin shell).

    Chains first (launches, waits, give-ups queue their alerts), then the alert outbox: on every
    tick, also one with no failed asset left, since an alert owed for an earlier give-up is owed
    whatever happened since.
    """
    outcome = _retry_chains(
        instance,
        asset_graph,
        cursor_and_warning,
        settings=settings,
        now=now,
        open_store=open_store,
        job_assets=job_assets,
    )
    delivery = deliver_pending_alerts(
        outcome.cursor, settings.alert_webhook_url, now=now, policy=ALERT_DELIVERY
    )
    outcome.cursor = delivery.cursor
    outcome.lines.extend(delivery.lines)
    outcome.errors.extend(delivery.errors)
    return outcome


def _retry_chains(
    instance: DagsterInstance,
    asset_graph: BaseAssetGraph,
    cursor_and_warning: tuple[RetryCursor, str | None],
    *,
    settings: Settings,
    now: float,
    open_store: Callable[[], ArtifactStore] | None,
    job_assets: Callable[[str], AbstractSet[str]] | None,
) -> TickOutcome:
    """Every failure chain of the tick: launch, wait or give up (see ``run_retry_tick``)."""
    cursor, warning = cursor_and_warning
    outcome = TickOutcome(cursor=cursor)
    if warning:
        outcome.lines.append(warning)
    queries = QueryLog()
    outcome.queries = queries.calls
    state = read_tick_state(instance, asset_graph, job_assets=job_assets, log=queries)
    if not state.failed:
        outcome.lines.append("No failed assets: nothing to retry.")
        outcome.cursor = cursor.pruned(set())
        return outcome

    graph = recovery_graph(asset_graph)
    roots = group_chains(state.failed, state.runs).keys()
    retries = read_chain_runs(instance, roots, log=queries)
    chains = group_chains(state.failed, state.runs, retries)

    policy = retry_policy(settings)
    patterns: tuple[ErrorPattern, ...] | None = None
    adapter = dbt_adapter_type(asset_graph)
    store: list[ArtifactStore | None] = []
    evidence: dict[str, RunEvidence] = {}

    def evidence_for(run_ids: list[str]) -> dict[str, RunEvidence]:
        """Failure messages per failed run (one event-log query each), read once per tick."""
        if not store:
            try:
                store.append(open_store() if open_store else None)
            except Exception as error:  # the event log alone still classifies
                logger.warning("artifact store unavailable for classification: %s", error)
                store.append(None)
        for run_id in run_ids:
            if run_id not in evidence:
                evidence[run_id] = read_run_evidence(instance, state.runs[run_id], store[0])
        return {run_id: evidence[run_id] for run_id in run_ids}

    executable = {
        key.to_user_string(): key
        for key in asset_graph.get_all_asset_keys()
        if asset_graph.get(key).is_executable
    }
    in_flight_roots = {run.chain_root for run in state.in_flight}
    blocked = graph.downstream(state.in_flight_assets) if state.in_flight_assets else set()
    claimed: set[str] = set()
    failed_of = {root: set(chain.failed) for root, chain in chains.items()}
    below_of = {
        root: graph.downstream(keys, include_self=False) for root, keys in failed_of.items()
    }
    rank = {key: position for position, key in enumerate(graph.topological_order(state.failed))}
    ordered = sorted(chains.values(), key=lambda c: (min(rank[k] for k in c.failed), c.root))

    for chain in ordered:
        root, latest = chain.root, chain.latest
        name = f"chain {root[:SHORT_ID_CHARS]}"
        failed_keys = failed_of[root]
        handled = cursor.handled.get(latest.run_id)
        if handled is not None:
            if handled.startswith("gave_up"):
                told = "alert not delivered yet" if latest.run_id in cursor.alerts else "reported"
                outcome.lines.append(
                    f"{name}: gave up on run {latest.run_id[:SHORT_ID_CHARS]} earlier "
                    f"({handled.split(':', 1)[-1]}), already {told}; "
                    f"{len(failed_keys)} assets stay failed until someone re-executes them"
                )
            else:
                outcome.lines.append(
                    f"{name}: retry {handled} already requested for run "
                    f"{latest.run_id[:SHORT_ID_CHARS]}; waiting for it to start"
                )
                claimed |= graph.downstream(failed_keys)
            continue

        others = set().union(*(failed_of[o] for o in chains if o != root))
        others_below = set().union(*(below_of[o] for o in chains if o != root))
        seeds = {key for key in failed_keys if key not in others_below}
        if not seeds:
            outcome.lines.append(
                f"{name}: its {len(failed_keys)} failed assets all lie below failures of other "
                "chains; their retries cover them"
            )
            continue
        held = graph.downstream(others) if others else set()
        reach = graph.downstream(seeds) - held
        waiting = reach & (blocked | claimed)
        in_flight = root in in_flight_roots or bool(waiting)

        if in_flight:
            classification = Classification(ErrorKind.UNKNOWN, None, "")
        else:
            found = evidence_for(chain.failed_run_ids)
            if patterns is None:
                patterns = error_patterns(settings)
            messages = [m for run_id in chain.failed_run_ids for m in found[run_id].messages]
            classification = classify_many(messages, patterns, adapter=adapter)

        decision = decide(
            policy,
            ChainState(
                root_run_id=root,
                latest_run_id=latest.run_id,
                attempt=chain.attempt,
                latest_failed_at=latest.finished_at,
                classification=classification,
                has_run_in_flight=in_flight,
            ),
            now=now,
        )

        if decision.kind is DecisionKind.SKIP_IN_FLIGHT:
            line = f"{name}: {decision.reason}"
            if waiting:
                line += (
                    f" ({len(waiting)} assets it would re-run are in or below a queued or "
                    f"running run: {preview(waiting)})"
                )
            outcome.lines.append(line)
            continue
        if decision.kind is DecisionKind.WAIT_BACKOFF:
            outcome.lines.append(f"{name}: {decision.reason}")
            continue
        if decision.kind.gives_up:
            # One alert per give-up, keyed by the run given up on: a later failed run of the
            # same chain (a manual re-execution, say) that the sensor gives up on is alerted too.
            if settings.alert_webhook_url:
                alert = give_up_alert(decision, chain, seeds)
                cursor = cursor.with_alert(latest.run_id, alert.to_dict(), now=now)
            marker = gave_up_marker(decision.kind.value.removeprefix("give_up_"))
            cursor = cursor.with_handled(latest.run_id, marker)
            outcome.lines.append(f"{name}: {decision.reason}")
            continue

        # LAUNCH. No check for an existing run of this attempt here: ``chain.attempt`` is the
        # highest attempt among every retry of the root in the instance (``read_chain_runs``),
        # so ``decision.attempt`` is always a new one — that is the one place attempts are counted.
        states = asset_states(
            (chain.failed[key] for key in seeds),
            evidence=evidence_for(chain.failed_run_ids),
            runs=state.runs,
            graph=graph,
            unique_ids=dbt_unique_ids_by_asset(asset_graph),
            step_assets=assets_by_step(asset_graph),
        )
        plan = plan_from_asset_states(graph, states, exclude=held)
        keys = [asset.key for asset in plan.assets if asset.key in executable]
        if not keys:
            outcome.lines.append(f"{name}: nothing executable to re-run ({plan.summary()})")
            continue
        run_key = retry_run_key(root, decision.attempt)
        full_refresh = any(is_full_refresh(run) for run in chain.runs)
        step_assets = assets_by_step(asset_graph)
        ops = [op for op, op_keys in step_assets.items() if op_keys & set(keys)]
        outcome.run_requests.append(
            RunRequest(
                run_key=run_key,
                asset_selection=[executable[key] for key in keys],
                tags={
                    **retry_tags(
                        plan, chain=chain, attempt=decision.attempt, full_refresh=full_refresh
                    ),
                    **warehouse_tags(settings),
                },
                run_config=retry_run_config(latest, ops, full_refresh=full_refresh),
            )
        )
        cursor = cursor.with_handled(latest.run_id, run_key)
        claimed |= set(keys)
        outcome.lines.append(f"{name}: {decision.reason}; the retry re-runs {plan.summary()}")

    keep = {root for root in chains} | {run.run_id for c in chains.values() for run in c.runs}
    outcome.cursor = cursor.pruned(keep)
    return outcome


__all__ = ["SENSOR_NAME", "build_retry_sensor", "build_sensors", "run_retry_tick"]
