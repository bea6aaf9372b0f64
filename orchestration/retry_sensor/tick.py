"""One evaluation of the retry sensor, in three steps: read → decide → request.

The steps are apart because each has its own cost and its own way to go wrong:

- **read** (``read_tick``) is the only step that asks the instance for state, and asks in a fixed
  number of batched queries (``history.tick_state``) whatever the number of assets — the
  integration tests count them. Those queries still read a row per asset, so a tick first asks
  the event log what happened since the last one (``watch``): when no run failed or was canceled
  (and, while failure chains are open, none ended), no backoff ended and the settings are the
  same, the last tick's decisions stand and the tick reads nothing more — a few one-row queries
  at any number of assets. Why a run failed costs one event-log query per failed run, so
  that is read lazily (``EvidenceReader``): only for a chain whose decision or plan needs it, at
  most once per run per tick.
- **decide** (``chain_scope``, ``ChainDecider``) is computation over what was read: which failed
  assets a chain's retry owns, whether any of them is busy, the error kind, and
  ``recovery.policy.decide`` (budget, backoff, error kind). Nothing here launches or alerts, so a
  wrong answer shows up as a wrong line in the SkipReason, not as a stray run.
- **request** (``plan_retry``, ``retry_request``, ``record_give_up``) turns a decision into what
  Dagster and people see: a RunRequest with the retry's run key, tags and run config, or a
  give-up marker (and an alert for the outbox) in the cursor.

Chains go through the steps one at a time in graph order, parents first, because a launch claims
the assets it re-runs: a later chain whose re-run overlaps a claimed asset waits instead of
launching it a second time. After the chains, the alert outbox is delivered — on every tick, also
one with nothing failed, since an alert owed for an earlier give-up is owed whatever happened
since.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace

from dagster import AssetKey, DagsterInstance, RunRequest
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph

from orchestration.artifacts.store import ArtifactStore
from orchestration.history.runs import recovery_graph, slim_ci_selected
from orchestration.history.tick_state import (
    FailureKind,
    QueryLog,
    RunEvidence,
    RunInfo,
    TickState,
    assets_by_step,
    dbt_adapter_type,
    dbt_unique_ids_by_asset,
    event_log_high_water,
    read_chain_runs,
    read_run_ends_since,
    read_run_evidence,
    read_tick_state,
)
from orchestration.recovery import AssetGraph, RetryPlan, plan_from_asset_states
from orchestration.recovery.classify import (
    Classification,
    ErrorKind,
    ErrorPattern,
    classify_many,
    default_patterns,
    load_patterns,
)
from orchestration.recovery.cursor import (
    RetryCursor,
    gave_up_marker,
    retry_run_key,
    run_ends_reason,
    stale_reason,
)
from orchestration.recovery.plan import preview
from orchestration.recovery.policy import (
    ChainState,
    Decision,
    DecisionKind,
    RetryPolicy,
    decide,
)
from orchestration.retry_sensor.alerts import DeliveryPolicy, deliver_pending_alerts
from orchestration.retry_sensor.chains import (
    Chain,
    asset_states,
    give_up_alert,
    group_chains,
    is_full_refresh,
    retry_run_config,
    retry_tags,
)
from orchestration.settings import Settings
from orchestration.tags import CI_STATE_TAG
from orchestration.warehouse import warehouse_tags

logger = logging.getLogger(__name__)

SHORT_ID_CHARS = 8
ALERT_DELIVERY = DeliveryPolicy(
    max_deliveries=5, backoff_seconds=30.0, backoff_max_seconds=600.0, timeout_seconds=5.0
)
"""One POST per alert per tick (a tick must stay well inside the daemon's sensor timeout), then
30 s, 60 s, … capped at 10 min between ticks: five attempts span about 7.5 minutes."""
FULL_READ_EVERY_SECONDS = 600.0
"""A tick reads every asset at least this often, even when the event log says nothing failed:
the safety net for anything the watch cannot see (an event that PostgreSQL committed after a
later id was read, a code change that added assets)."""


@dataclass
class TickOutcome:
    run_requests: list[RunRequest] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """One line per failure chain (and a first line for a cursor that could not be read)."""
    cursor: RetryCursor = field(default_factory=RetryCursor)
    queries: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Alerts given up on this tick: the sensor logs each as an ERROR."""
    full_read: str | None = None
    """Why this tick read every asset; ``None`` when the last tick's decisions stood."""
    open_chains: bool = False
    wake_at: float | None = None


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

    The watch first (is there anything new to decide?), then the chains (launches, waits,
    give-ups queue their alerts), then the alert outbox.
    """
    cursor, warning = cursor_and_warning
    queries = QueryLog()
    key = settings_key(settings)
    high_water, why = watch(instance, cursor, settings_key=key, now=now, log=queries)
    if why is None:
        outcome = quiet_tick(cursor, high_water or 0, now=now, warning=warning)
    else:
        outcome = retry_chains(
            instance,
            asset_graph,
            cursor_and_warning,
            settings=settings,
            now=now,
            open_store=open_store,
            job_assets=job_assets,
            log=queries,
        )
        outcome.full_read = why
        outcome.cursor = outcome.cursor.after_full_read(
            high_water=high_water or 0,
            now=now,
            settings_key=key,
            open_chains=outcome.open_chains,
            wake_at=outcome.wake_at,
        )
    outcome.queries = queries.calls
    delivery = deliver_pending_alerts(
        outcome.cursor, settings.alert_webhook_url, now=now, policy=ALERT_DELIVERY
    )
    outcome.cursor = delivery.cursor
    outcome.lines.extend(delivery.lines)
    outcome.errors.extend(delivery.errors)
    return outcome


def retry_chains(
    instance: DagsterInstance,
    asset_graph: BaseAssetGraph,
    cursor_and_warning: tuple[RetryCursor, str | None],
    *,
    settings: Settings,
    now: float,
    open_store: Callable[[], ArtifactStore] | None,
    job_assets: Callable[[str], AbstractSet[str]] | None,
    log: QueryLog | None = None,
) -> TickOutcome:
    """Every failure chain of the tick, read once, then decided and requested one by one.

    ``outcome.cursor`` is the running cursor: a chain's launch or give-up is in it before the
    next chain is looked at; it is pruned to the chains still failed at the end.
    """
    cursor, warning = cursor_and_warning
    outcome = TickOutcome(cursor=cursor)
    if warning:
        outcome.lines.append(warning)
    queries = log or QueryLog()
    outcome.queries = queries.calls
    read = read_tick(
        instance, asset_graph, job_assets=job_assets, open_store=open_store, log=queries
    )
    if read is None:
        outcome.lines.append("No failed assets: nothing to retry.")
        outcome.cursor = cursor.pruned(set())
        return outcome
    outcome.open_chains = True  # any run that ends may heal or fail one of these chains
    decider = ChainDecider(
        settings=settings,
        policy=retry_policy(settings),
        adapter=dbt_adapter_type(asset_graph),
        evidence=read.evidence,
    )
    claimed: set[str] = set()
    for chain in read.ordered_chains():
        _handle_chain(read, chain, decider, outcome, claimed, settings=settings, now=now)
    outcome.cursor = outcome.cursor.pruned(read.kept_run_ids())
    return outcome


# --- watch -----------------------------------------------------------------------------------


def settings_key(settings: Settings) -> str:
    """A fingerprint of what the decisions depend on besides the instance: the policy, the
    error patterns (file and its mtime), whether give-ups are alerted."""
    patterns = settings.error_patterns_file
    stamp = None
    if patterns is not None:
        try:
            stamp = patterns.stat().st_mtime_ns
        except OSError:
            stamp = "missing"
    text = repr((retry_policy(settings), str(patterns), stamp, bool(settings.alert_webhook_url)))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def watch(
    instance: DagsterInstance,
    cursor: RetryCursor,
    *,
    settings_key: str,
    now: float,
    log: QueryLog,
) -> tuple[int | None, str | None]:
    """(the event log's latest id, why this tick must read every asset — ``None`` when the last
    tick's decisions stand): one ``max(id)`` query, plus at most three one-row run-status
    queries when the event log moved."""
    high_water = event_log_high_water(instance, log)
    why = stale_reason(
        cursor,
        high_water=high_water,
        now=now,
        settings_key=settings_key,
        full_read_every_seconds=FULL_READ_EVERY_SECONDS,
    )
    if why is None and high_water is not None and high_water > cursor.last_seen_storage_id:
        ends = read_run_ends_since(
            instance, cursor.last_seen_storage_id, any_end=cursor.open_chains, log=log
        )
        why = run_ends_reason(cursor, ends)
    return high_water, why


def quiet_tick(
    cursor: RetryCursor, high_water: int, *, now: float, warning: str | None
) -> TickOutcome:
    """A tick with nothing new to decide: the cursor moves to the event log's latest id."""
    outcome = TickOutcome(cursor=cursor.with_last_seen_storage_id(high_water))
    if warning:
        outcome.lines.append(warning)
    age = max(now - cursor.full_read_at, 0.0)
    outcome.lines.append(
        f"Nothing new to decide: no run failed or was canceled since the last full read "
        f"({age:.0f} s ago); its decisions stand."
    )
    for run_id, handled in sorted(cursor.handled.items()):
        outcome.lines.append(
            f"run {run_id[:SHORT_ID_CHARS]}: {_handled_line(run_id, handled, cursor, None)}"
        )
    if cursor.open_chains and not cursor.handled:
        outcome.lines.append(
            "Failure chains wait for a run in flight or a backoff (the last full read says which)."
        )
    return outcome


# --- read ------------------------------------------------------------------------------------


class EvidenceReader:
    """Why failed runs failed: one event-log query per run, on first need, once per tick.

    The artifact store (for stored ``run_results.json``) is opened on the first read too; when it
    cannot be, classification goes on from the event log alone.
    """

    def __init__(
        self,
        instance: DagsterInstance,
        runs: Mapping[str, RunInfo],
        open_store: Callable[[], ArtifactStore] | None,
    ) -> None:
        self._instance = instance
        self._runs = runs
        self._open_store = open_store
        self._store: ArtifactStore | None = None
        self._store_opened = False
        self._read: dict[str, RunEvidence] = {}

    def __call__(self, run_ids: Sequence[str]) -> dict[str, RunEvidence]:
        store = self._artifact_store()
        for run_id in run_ids:
            if run_id not in self._read:
                self._read[run_id] = read_run_evidence(self._instance, self._runs[run_id], store)
        return {run_id: self._read[run_id] for run_id in run_ids}

    def _artifact_store(self) -> ArtifactStore | None:
        if not self._store_opened:
            self._store_opened = True
            try:
                self._store = self._open_store() if self._open_store else None
            except Exception as error:  # the event log alone still classifies
                logger.warning("artifact store unavailable for classification: %s", error)
        return self._store


@dataclass(frozen=True)
class TickRead:
    """What the read step found: the failure chains, indexed the way the decisions ask."""

    asset_graph: BaseAssetGraph
    state: TickState
    graph: AssetGraph
    chains: Mapping[str, Chain]
    evidence: EvidenceReader
    executable: Mapping[str, AssetKey]
    """User string → key of every executable asset: only those can be in a RunRequest."""
    in_flight_roots: frozenset[str]
    blocked: set[str]
    """Assets in or below a queued or running run: nothing that touches them is final yet."""
    failed_of: Mapping[str, set[str]]
    """Chain root → its failed assets."""
    below_of: Mapping[str, set[str]]
    """Chain root → everything strictly below its failed assets."""

    def ordered_chains(self) -> list[Chain]:
        """Parents first, so a chain's retry claims its assets before the chains below it."""
        order = self.graph.topological_order(self.state.failed)
        rank = {key: position for position, key in enumerate(order)}
        return sorted(self.chains.values(), key=lambda c: (min(rank[k] for k in c.failed), c.root))

    def kept_run_ids(self) -> set[str]:
        """What the cursor keeps: the roots and runs of the chains still failed."""
        runs = {run.run_id for chain in self.chains.values() for run in chain.runs}
        return set(self.chains) | runs


def read_tick(
    instance: DagsterInstance,
    asset_graph: BaseAssetGraph,
    *,
    job_assets: Callable[[str], AbstractSet[str]] | None,
    open_store: Callable[[], ArtifactStore] | None,
    log: QueryLog,
) -> TickRead | None:
    """The tick state, then the retries of its chains; ``None`` when nothing is failed."""
    state = read_tick_state(instance, asset_graph, job_assets=job_assets, log=log)
    evidence = EvidenceReader(instance, state.runs, open_store)
    state = without_unselected_ci_assets(state, evidence, asset_graph)
    if not state.failed:
        return None
    graph = recovery_graph(asset_graph)
    roots = group_chains(state.failed, state.runs).keys()
    retries = read_chain_runs(instance, roots, log=log)
    chains = group_chains(state.failed, state.runs, retries)
    failed_of = {root: set(chain.failed) for root, chain in chains.items()}
    return TickRead(
        asset_graph=asset_graph,
        state=state,
        graph=graph,
        chains=chains,
        evidence=evidence,
        executable={
            key.to_user_string(): key
            for key in asset_graph.get_all_asset_keys()
            if asset_graph.get(key).is_executable
        },
        in_flight_roots=frozenset(run.chain_root for run in state.in_flight),
        blocked=graph.downstream(state.in_flight_assets) if state.in_flight_assets else set(),
        failed_of=failed_of,
        below_of={
            root: graph.downstream(keys, include_self=False) for root, keys in failed_of.items()
        },
    )


def without_unselected_ci_assets(
    state: TickState, evidence: EvidenceReader, asset_graph: BaseAssetGraph
) -> TickState:
    """The tick state minus the ``ci/`` assets a failed slim CI run planned but never meant
    to build (``history.runs.slim_ci_selected``): otherwise every unchanged model of a failed
    CI run would look failed, and its retry would rebuild the change's whole neighbourhood.
    Costs the evidence read (cached for the tick) of each failed slim CI run, none otherwise."""
    ci_runs = sorted(
        {
            asset.run_id
            for asset in state.failed.values()
            if asset.kind is FailureKind.UNMATERIALIZED
            and state.runs[asset.run_id].tags.get(CI_STATE_TAG)
        }
    )
    if not ci_runs:
        return state
    found = evidence(ci_runs)
    unique_ids = dbt_unique_ids_by_asset(asset_graph)
    failed = {}
    for key, asset in state.failed.items():
        tags = state.runs[asset.run_id].tags
        run = found.get(asset.run_id)
        selected = None if run is None else slim_ci_selected(tags, run.dbt_results)
        if selected is None or key not in unique_ids or unique_ids[key] in selected:
            failed[key] = asset
    return replace(state, failed=failed)


# --- decide ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainScope:
    """Which assets one chain's retry would own, and whether any of them is busy."""

    seeds: set[str]
    """Its failed assets below no other chain's failure: what its retry starts from."""
    held: set[str]
    """Everything in or below other chains' failures: their retries re-run it, not this one."""
    waiting: set[str]
    """What it would re-run that is in or below a run in flight, or claimed by a retry."""
    in_flight: bool


def chain_scope(read: TickRead, chain: Chain, claimed: AbstractSet[str]) -> ChainScope | None:
    """The chain's share of the failures; ``None`` when all of it lies below other chains'."""
    root = chain.root
    others = set().union(*(read.failed_of[o] for o in read.chains if o != root))
    others_below = set().union(*(read.below_of[o] for o in read.chains if o != root))
    seeds = {key for key in read.failed_of[root] if key not in others_below}
    if not seeds:
        return None
    held = read.graph.downstream(others) if others else set()
    reach = read.graph.downstream(seeds) - held
    waiting = reach & (read.blocked | claimed)
    in_flight = root in read.in_flight_roots or bool(waiting)
    return ChainScope(seeds=seeds, held=held, waiting=waiting, in_flight=in_flight)


@dataclass
class ChainDecider:
    """The retry policy and error patterns of a tick; patterns load on the first classification.

    Lazily, because a tick whose chains are all in flight or handled never classifies, and a bad
    patterns file should not stop such a tick.
    """

    settings: Settings
    policy: RetryPolicy
    adapter: str | None
    evidence: EvidenceReader
    _patterns: tuple[ErrorPattern, ...] | None = None

    def decide(self, chain: Chain, scope: ChainScope, *, now: float) -> Decision:
        """The policy's answer; no classification while something of the chain is in flight
        (nothing is final, and reading evidence would cost queries for nothing)."""
        if scope.in_flight:
            classification = Classification(ErrorKind.UNKNOWN, None, "")
        else:
            classification = self.classify(chain)
        state = ChainState(
            root_run_id=chain.root,
            latest_run_id=chain.latest.run_id,
            attempt=chain.attempt,
            latest_failed_at=chain.latest.finished_at,
            classification=classification,
            has_run_in_flight=scope.in_flight,
        )
        return decide(self.policy, state, now=now)

    def classify(self, chain: Chain) -> Classification:
        found = self.evidence(chain.failed_run_ids)
        if self._patterns is None:
            self._patterns = error_patterns(self.settings)
        messages = [m for run_id in chain.failed_run_ids for m in found[run_id].messages]
        return classify_many(messages, self._patterns, adapter=self.adapter)


def _handled_line(latest: str, handled: str, cursor: RetryCursor, failed: int | None) -> str:
    """What an earlier tick did with a chain's latest run (the cursor remembers it)."""
    if handled.startswith("gave_up"):
        told = "alert not delivered yet" if latest in cursor.alerts else "reported"
        assets = f"{failed} assets" if failed is not None else "its assets"
        return (
            f"gave up on run {latest[:SHORT_ID_CHARS]} earlier "
            f"({handled.split(':', 1)[-1]}), already {told}; "
            f"{assets} stay failed until someone re-executes them"
        )
    return (
        f"retry {handled} already requested for run "
        f"{latest[:SHORT_ID_CHARS]}; waiting for it to start"
    )


def _handle_chain(
    read: TickRead,
    chain: Chain,
    decider: ChainDecider,
    outcome: TickOutcome,
    claimed: set[str],
    *,
    settings: Settings,
    now: float,
) -> None:
    """Decide one chain and carry the decision out: one line, maybe a request or a give-up."""
    name = f"chain {chain.root[:SHORT_ID_CHARS]}"
    failed_keys = read.failed_of[chain.root]
    handled = outcome.cursor.handled.get(chain.latest.run_id)
    if handled is not None:
        outcome.lines.append(
            f"{name}: "
            f"{_handled_line(chain.latest.run_id, handled, outcome.cursor, len(failed_keys))}"
        )
        if not handled.startswith("gave_up"):
            claimed |= read.graph.downstream(failed_keys)  # its requested retry re-runs these
        return
    scope = chain_scope(read, chain, claimed)
    if scope is None:
        outcome.lines.append(
            f"{name}: its {len(failed_keys)} failed assets all lie below failures of other "
            "chains; their retries cover them"
        )
        return
    decision = decider.decide(chain, scope, now=now)
    line = decision.reason
    if decision.kind is DecisionKind.SKIP_IN_FLIGHT:
        if scope.waiting:
            line += (
                f" ({len(scope.waiting)} assets it would re-run are in or below a queued or "
                f"running run: {preview(scope.waiting)})"
            )
    elif decision.kind is DecisionKind.WAIT_BACKOFF:
        if decision.not_before is not None:
            outcome.wake_at = min(outcome.wake_at or decision.not_before, decision.not_before)
    elif decision.kind.gives_up:
        outcome.cursor = record_give_up(
            outcome.cursor, decision, chain, scope.seeds, settings=settings, now=now
        )
    else:
        line = _launch(read, chain, scope, decision, outcome, claimed, settings=settings)
    outcome.lines.append(f"{name}: {line}")


# --- request ---------------------------------------------------------------------------------


def record_give_up(
    cursor: RetryCursor,
    decision: Decision,
    chain: Chain,
    seeds: AbstractSet[str],
    *,
    settings: Settings,
    now: float,
) -> RetryCursor:
    """The give-up marker for the chain's latest run, and its alert queued in the outbox.

    One alert per give-up, keyed by the run given up on: a later failed run of the same chain (a
    manual re-execution, say) that the sensor gives up on is alerted too.
    """
    latest = chain.latest.run_id
    if settings.alert_webhook_url:
        alert = give_up_alert(decision, chain, seeds)
        cursor = cursor.with_alert(latest, alert.to_dict(), now=now)
    marker = gave_up_marker(decision.kind.value.removeprefix("give_up_"))
    return cursor.with_handled(latest, marker)


def _launch(
    read: TickRead,
    chain: Chain,
    scope: ChainScope,
    decision: Decision,
    outcome: TickOutcome,
    claimed: set[str],
    *,
    settings: Settings,
) -> str:
    """Request the retry (and claim what it re-runs) unless nothing of it is executable.

    No check for an existing run of this attempt here: ``chain.attempt`` is the highest attempt
    among every retry of the root in the instance (``read_chain_runs``), so ``decision.attempt``
    is always a new one — that is the one place attempts are counted.
    """
    plan, keys = plan_retry(read, chain, scope)
    if not keys:
        return f"nothing executable to re-run ({plan.summary()})"
    request = retry_request(read, chain, decision, plan, keys, settings=settings)
    outcome.run_requests.append(request)
    outcome.cursor = outcome.cursor.with_handled(chain.latest.run_id, request.run_key)
    claimed |= set(keys)
    return f"{decision.reason}; the retry re-runs {plan.summary()}"


def plan_retry(read: TickRead, chain: Chain, scope: ChainScope) -> tuple[RetryPlan, list[str]]:
    """The recovery plan from the chain's seeds, and the executable assets it re-runs."""
    states = asset_states(
        (chain.failed[key] for key in scope.seeds),
        evidence=read.evidence(chain.failed_run_ids),
        runs=read.state.runs,
        graph=read.graph,
        unique_ids=dbt_unique_ids_by_asset(read.asset_graph),
        step_assets=assets_by_step(read.asset_graph),
    )
    plan = plan_from_asset_states(read.graph, states, exclude=scope.held)
    return plan, [asset.key for asset in plan.assets if asset.key in read.executable]


def retry_request(
    read: TickRead,
    chain: Chain,
    decision: Decision,
    plan: RetryPlan,
    keys: Sequence[str],
    *,
    settings: Settings,
) -> RunRequest:
    """The RunRequest of retry ``decision.attempt``: its run key makes Dagster launch it once."""
    full_refresh = any(is_full_refresh(run) for run in chain.runs)
    selected = set(keys)
    ops = [op for op, op_keys in assets_by_step(read.asset_graph).items() if op_keys & selected]
    return RunRequest(
        run_key=retry_run_key(chain.root, decision.attempt),
        asset_selection=[read.executable[key] for key in keys],
        tags={
            **retry_tags(plan, chain=chain, attempt=decision.attempt, full_refresh=full_refresh),
            **warehouse_tags(settings),
        },
        run_config=retry_run_config(chain.latest, ops, full_refresh=full_refresh),
    )
