"""What the retry sensor reads from the Dagster instance on a tick, in a fixed number of queries.

Open-source Dagster stores no per-asset failure events (docs/architecture.md, "What Dagster
records"), so "failed" is derived: an asset failed when the run that last *planned* it
(its asset record's ``last_run_id``) ended FAILURE or CANCELED without materializing it, or when
its blocking check failed after its latest materialization. Everything here is batched — one
query for all asset records, one for all blocking checks, one for the runs those records name,
one for the runs in flight, one for the retries of the failure chains — so a tick costs the same
number of queries for 20 assets or 10,000. Reading *why* a run failed (its failure events and
stored dbt ``run_results.json``) is one event-log query per failed run, never per asset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunStatusChangeRecordsFilter,
)
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.dagster_run import RunRecord, RunsFilter

from orchestration.artifacts.run_results import NODE_FAILED_STATUSES, RunResults
from orchestration.artifacts.store import ArtifactStore
from orchestration.dbt.translator import unique_ids_by_asset_key
from orchestration.history.runs import stored_run_results
from orchestration.recovery.cursor import RunEnds
from orchestration.tags import ATTEMPT_TAG, RETRY_ROOT_TAG, ROOT_RUN_TAG

IN_FLIGHT_STATUSES = (
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)
"""A run in one of these may still plan or materialize assets: nothing it touches is final."""

FAILED_STATUSES = frozenset({DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED})

_EVIDENCE_EVENT_TYPES = {
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.ENGINE_EVENT,
}


class FailureKind(StrEnum):
    UNMATERIALIZED = "unmaterialized"
    """Its latest planned run ended FAILURE/CANCELED without materializing it."""
    CHECK_FAILED = "check_failed"
    """A blocking check failed after (or with) its latest materialization."""
    CHECK_NOT_EXECUTED = "check_not_executed"
    """Materialized in a run that failed before its blocking check ran."""


@dataclass(frozen=True)
class FailedAsset:
    key: str
    run_id: str
    """The run the failure belongs to (it decides the asset's failure chain)."""
    kind: FailureKind
    checks: tuple[str, ...] = ()
    """For the check kinds: the blocking checks concerned."""


@dataclass(frozen=True)
class RunInfo:
    """The parts of a run record the sensor uses (plain data, easy to reason about)."""

    run_id: str
    status: DagsterRunStatus
    job_name: str
    tags: Mapping[str, str]
    created_at: float
    end_time: float | None
    asset_selection: frozenset[str] | None
    run_config: Mapping[str, Any]
    parent_root_run_id: str | None = None

    @classmethod
    def from_record(cls, record: RunRecord) -> RunInfo:
        run = record.dagster_run
        return cls(
            run_id=run.run_id,
            status=run.status,
            job_name=run.job_name,
            tags=dict(run.tags),
            created_at=record.create_timestamp.timestamp(),
            end_time=record.end_time,
            asset_selection=(
                None
                if run.asset_selection is None
                else frozenset(key.to_user_string() for key in run.asset_selection)
            ),
            run_config=dict(run.run_config or {}),
            parent_root_run_id=run.root_run_id,
        )

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT_STATUSES

    @property
    def chain_root(self) -> str:
        """Our retry tag, else Dagster's re-execution root, else the run itself."""
        return (
            self.tags.get(RETRY_ROOT_TAG)
            or self.tags.get(ROOT_RUN_TAG)
            or self.parent_root_run_id
            or self.run_id
        )

    @property
    def attempt(self) -> int:
        """The ``orchestration/attempt`` tag; 0 for a root (or an unreadable tag)."""
        try:
            return max(int(self.tags.get(ATTEMPT_TAG, "0")), 0)
        except ValueError:
            return 0

    @property
    def finished_at(self) -> float:
        return self.end_time if self.end_time is not None else self.created_at


@dataclass(frozen=True)
class TickState:
    failed: Mapping[str, FailedAsset]
    runs: Mapping[str, RunInfo]
    """Every run named by a failed asset (and the other runs the records pointed at)."""
    in_flight: tuple[RunInfo, ...]
    in_flight_assets: frozenset[str]


@dataclass
class QueryLog:
    """Which batched instance calls a tick made (for the sensor's log and for tests)."""

    calls: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.calls.append(name)


def blocking_check_keys(asset_graph: BaseAssetGraph) -> list[Any]:
    return [key for key in asset_graph.asset_check_keys if asset_graph.get_check_spec(key).blocking]


@dataclass(frozen=True)
class AssetRecords:
    """What the asset records say about each executable asset (user string keys)."""

    last_run: Mapping[str, str]
    """The run that last planned the asset (records without one are left out)."""
    materialized_in: Mapping[str, str | None]
    """The run of its latest materialization; ``None`` when it never materialized."""
    materialized_at: Mapping[str, float]


def read_tick_state(
    instance: DagsterInstance,
    asset_graph: BaseAssetGraph,
    *,
    job_assets: Callable[[str], AbstractSet[str]] | None = None,
    log: QueryLog | None = None,
) -> TickState:
    """Failed assets, the runs they failed in, and what is in flight: four batched queries.

    ``job_assets`` names the assets of a job, for in-flight runs of a whole job (no asset
    selection) that were created before the latest failure, so they are not the ``last_run_id``
    of the assets they will rebuild.
    """
    log = log or QueryLog()
    asset_keys = [
        key for key in asset_graph.get_all_asset_keys() if asset_graph.get(key).is_executable
    ]
    # In-flight runs first: a run created after this query shows up below as the last_run_id of
    # the assets it planned, with an in-flight status, and counts all the same.
    in_flight = _read_in_flight_runs(instance, log)
    records = _read_asset_records(instance, asset_keys, log)
    log.add("get_latest_asset_check_execution_by_key")
    executions = latest_check_executions(instance, blocking_check_keys(asset_graph))
    candidates = _candidate_runs(records, executions) - in_flight.keys()
    runs = _read_runs(instance, candidates, in_flight, log)
    in_flight_assets = _in_flight_assets(records, in_flight, job_assets)
    failed = _unmaterialized(records, runs)
    failed.update(_check_failures(executions, records, runs, skip=failed.keys() | in_flight_assets))
    for key in in_flight_assets:
        failed.pop(key, None)
    return TickState(
        failed=failed,
        runs=runs,
        in_flight=tuple(sorted(in_flight.values(), key=lambda info: info.created_at)),
        in_flight_assets=frozenset(in_flight_assets),
    )


def _read_in_flight_runs(instance: DagsterInstance, log: QueryLog) -> dict[str, RunInfo]:
    """Query 1: every queued or running run."""
    log.add("get_run_records(statuses=in_flight)")
    records = instance.get_run_records(RunsFilter(statuses=list(IN_FLIGHT_STATUSES)))
    return {r.dagster_run.run_id: RunInfo.from_record(r) for r in records}


def _read_asset_records(
    instance: DagsterInstance, asset_keys: Sequence[Any], log: QueryLog
) -> AssetRecords:
    """Query 2: every asset record in one call."""
    log.add("get_asset_records")
    last_run: dict[str, str] = {}
    materialized_in: dict[str, str | None] = {}
    materialized_at: dict[str, float] = {}
    for record in instance.get_asset_records(asset_keys):
        entry = record.asset_entry
        key = entry.asset_key.to_user_string()
        mat = entry.last_materialization_record
        materialized_in[key] = mat.run_id if mat is not None else None
        if mat is not None:
            materialized_at[key] = mat.event_log_entry.timestamp
        if entry.last_run_id:
            last_run[key] = entry.last_run_id
    return AssetRecords(last_run, materialized_in, materialized_at)


def _candidate_runs(records: AssetRecords, executions: Mapping[Any, Any]) -> set[str]:
    """Runs that may have failed something: one that planned an asset without materializing it,
    or one whose blocking check failed or never ran."""
    candidates = {
        run_id
        for key, run_id in records.last_run.items()
        if records.materialized_in.get(key) != run_id
    }
    for execution in executions.values():
        if execution.status in (
            AssetCheckExecutionRecordStatus.FAILED,
            AssetCheckExecutionRecordStatus.PLANNED,
        ):
            candidates.add(execution.run_id)
    return candidates


def _read_runs(
    instance: DagsterInstance,
    candidates: AbstractSet[str],
    in_flight: dict[str, RunInfo],
    log: QueryLog,
) -> dict[str, RunInfo]:
    """Query 4: the status of every candidate run, in one call (``RunsFilter(run_ids=[])``
    raises, so none without candidates). A candidate found in flight joins ``in_flight``."""
    runs: dict[str, RunInfo] = dict(in_flight)
    if candidates:
        log.add("get_run_records(run_ids=...)")
        for record in instance.get_run_records(RunsFilter(run_ids=sorted(candidates))):
            info = RunInfo.from_record(record)
            runs[info.run_id] = info
            if info.in_flight:
                in_flight[info.run_id] = info
    return runs


def _in_flight_assets(
    records: AssetRecords,
    in_flight: Mapping[str, RunInfo],
    job_assets: Callable[[str], AbstractSet[str]] | None,
) -> set[str]:
    """Assets a run in flight planned, selected, or (a whole-job run) will build."""
    assets = {key for key, run_id in records.last_run.items() if run_id in in_flight}
    for info in in_flight.values():
        if info.asset_selection is not None:
            assets |= info.asset_selection
        elif job_assets is not None:
            assets |= job_assets(info.job_name)
    return assets


def _unmaterialized(records: AssetRecords, runs: Mapping[str, RunInfo]) -> dict[str, FailedAsset]:
    """Assets whose latest planned run failed without materializing them."""
    failed: dict[str, FailedAsset] = {}
    for key, run_id in records.last_run.items():
        info = runs.get(run_id)
        if (
            info is not None
            and info.status in FAILED_STATUSES
            and records.materialized_in.get(key) != run_id
        ):
            failed[key] = FailedAsset(key, run_id, FailureKind.UNMATERIALIZED)
    return failed


def _check_failures(
    executions: Mapping[Any, Any],
    records: AssetRecords,
    runs: Mapping[str, RunInfo],
    *,
    skip: AbstractSet[str],
) -> dict[str, FailedAsset]:
    """Materialized assets whose blocking check failed, or never ran in a failed run."""
    found: dict[str, dict[FailureKind, list[tuple[float, str, str]]]] = {}
    for check_key, execution in executions.items():
        key = check_key.asset_key.to_user_string()
        if key in skip or records.materialized_in.get(key) is None:
            continue
        kind = _check_failure_kind(execution, records, runs, key)
        if kind is not None:
            found.setdefault(key, {}).setdefault(kind, []).append(
                (_evaluated_at(execution), check_key.name, execution.run_id)
            )
    failed: dict[str, FailedAsset] = {}
    for key, by_kind in found.items():
        # A check that failed says more than one that never ran.
        kind = next(
            k for k in (FailureKind.CHECK_FAILED, FailureKind.CHECK_NOT_EXECUTED) if k in by_kind
        )
        checks = by_kind[kind]
        # The failure belongs to the latest run that evaluated the asset's blocking checks:
        # that run decides the asset's failure chain and the evidence its retry is judged by.
        latest_run = max(checks)[2]
        names = tuple(sorted(name for _, name, _ in checks))
        failed[key] = FailedAsset(key, latest_run, kind, names)
    return failed


def _check_failure_kind(
    execution: Any, records: AssetRecords, runs: Mapping[str, RunInfo], key: str
) -> FailureKind | None:
    """How one blocking check's latest execution fails its (materialized) asset, if it does."""
    same_run = execution.run_id == records.materialized_in[key]
    if execution.status is AssetCheckExecutionRecordStatus.FAILED:
        evaluated_at = execution.event.timestamp if execution.event else 0.0
        if _warn_only(execution) or (not same_run and evaluated_at < records.materialized_at[key]):
            return None  # a warning never blocks; a check older than the data says nothing
        return FailureKind.CHECK_FAILED
    if execution.status is AssetCheckExecutionRecordStatus.PLANNED and same_run:
        info = runs.get(execution.run_id)
        if info is None or info.status not in FAILED_STATUSES:
            return None
        return FailureKind.CHECK_NOT_EXECUTED
    return None


def latest_check_executions(instance: DagsterInstance, check_keys: Sequence[Any]) -> dict:
    """The latest execution record of each check, in one SQL query.

    ``event_log_storage.get_asset_check_summary_records`` is one call too, but the SQL storages
    implement it as a loop running one or two queries *per check*, so it is not constant in the
    number of checks. ``get_latest_asset_check_execution_by_key`` is a single grouped query.
    Its ``IN`` filters are per column (a cross product), so foreign pairs are dropped here.
    """
    if not check_keys:
        return {}
    storage = instance.event_log_storage
    wanted = set(check_keys)
    latest = getattr(storage, "get_latest_asset_check_execution_by_key", None)
    if latest is None:  # a storage without the batched query: fall back to the summary call
        summaries = storage.get_asset_check_summary_records(list(check_keys))
        return {
            key: summary.last_check_execution_record
            for key, summary in summaries.items()
            if summary.last_check_execution_record is not None
        }
    return {key: record for key, record in latest(list(check_keys)).items() if key in wanted}


def _evaluated_at(execution: Any) -> float:
    """When a check execution last changed (its evaluation, or its planning if it never ran)."""
    if execution.event is not None:
        return float(execution.event.timestamp)
    return float(getattr(execution, "create_timestamp", 0.0) or 0.0)


def _warn_only(execution: Any) -> bool:
    event = execution.event
    data = event.dagster_event.event_specific_data if event and event.dagster_event else None
    return getattr(data, "severity", None) == AssetCheckSeverity.WARN


def event_log_high_water(instance: DagsterInstance, log: QueryLog) -> int | None:
    """The event log's latest storage id (one ``max(id)`` query); ``None`` when the storage
    cannot say (then every tick reads in full). On SQLite it is the index shard's, which holds
    every asset, check and run-status event."""
    log.add("get_maximum_record_id")
    try:
        return int(instance.event_log_storage.get_maximum_record_id() or 0)
    except NotImplementedError:
        return None


def read_run_ends_since(
    instance: DagsterInstance, storage_id: int, *, any_end: bool, log: QueryLog
) -> RunEnds:
    """Whether a run failed, was canceled (or, with ``any_end``, ended at all) after
    ``storage_id``: one run-status query per kind, one row at most each, whatever the number of
    assets or events. A blocking check that fails fails its step, so its run shows up here."""
    kinds = [DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED]
    failed = _first_run_status_change(instance, kinds, storage_id, log)
    ended = None
    if any_end and failed is None:
        ended = _first_run_status_change(instance, [DagsterEventType.RUN_SUCCESS], storage_id, log)
    return RunEnds(failed=failed, ended=failed or ended)


def _first_run_status_change(
    instance: DagsterInstance,
    kinds: Sequence[DagsterEventType],
    storage_id: int,
    log: QueryLog,
) -> str | None:
    for kind in kinds:
        log.add(f"fetch_run_status_changes({kind.value})")
        result = instance.event_log_storage.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(kind, after_storage_id=storage_id), limit=1
        )
        if result.records:
            return result.records[0].event_log_entry.run_id
    return None


def read_chain_runs(
    instance: DagsterInstance, roots: Iterable[str], *, log: QueryLog | None = None
) -> dict[str, list[RunInfo]]:
    """Every run tagged as a retry of one of ``roots`` (ours), grouped by root: one query."""
    roots = sorted(set(roots))
    if not roots:
        return {}
    if log is not None:
        log.add("get_run_records(tags=retry_root)")
    found: dict[str, list[RunInfo]] = {root: [] for root in roots}
    for record in instance.get_run_records(RunsFilter(tags={RETRY_ROOT_TAG: roots})):
        info = RunInfo.from_record(record)
        found.setdefault(info.tags.get(RETRY_ROOT_TAG, ""), []).append(info)
    return found


@dataclass(frozen=True)
class RunEvidence:
    """Why one run failed: messages to classify, failed steps, and its dbt results."""

    run_id: str
    messages: tuple[str, ...]
    failed_steps: frozenset[str]
    step_errors: Mapping[str, str]
    dbt_results: RunResults | None
    warnings: tuple[str, ...] = ()


def read_run_evidence(
    instance: DagsterInstance, run: RunInfo, store: ArtifactStore | None
) -> RunEvidence:
    """One event-log query for the run's failure events, plus its stored run_results.json."""
    step_messages: list[str] = []
    other_messages: list[str] = []
    failed_steps: set[str] = set()
    step_errors: dict[str, str] = {}
    for entry in instance.all_logs(run.run_id, of_type=_EVIDENCE_EVENT_TYPES):
        event = entry.dagster_event
        if event is None:
            continue
        error = getattr(event.event_specific_data, "error", None)
        text = _error_text(error)
        if event.event_type == DagsterEventType.STEP_FAILURE:
            if event.step_key:
                failed_steps.add(event.step_key)
                step_errors.setdefault(event.step_key, text or entry.message or "")
            step_messages.append(text or entry.message or "")
        elif event.event_type == DagsterEventType.RUN_FAILURE:
            other_messages.extend(m for m in (entry.message, text) if m)
        elif text:  # engine events with an error: a worker that died, a timeout
            other_messages.append(f"{entry.message or ''}\n{text}")
    stored = stored_run_results(store, run.run_id)
    dbt_messages = []
    if stored.results is not None:
        dbt_messages = [
            result.message
            for result in stored.results.by_unique_id.values()
            if result.status in NODE_FAILED_STATUSES and result.message
        ]
    if run.status is DagsterRunStatus.CANCELED:
        other_messages.append(f"run {run.run_id} was canceled")
    return RunEvidence(
        run_id=run.run_id,
        messages=tuple(m for m in (*dbt_messages, *step_messages, *other_messages) if m),
        failed_steps=frozenset(failed_steps),
        step_errors=step_errors,
        dbt_results=stored.results,
        warnings=tuple(stored.warnings),
    )


def _error_text(error: Any) -> str:
    """The message of an error and of its causes — never the stack, whose source lines would
    feed classification words like "timeout" that describe code, not the failure."""
    parts: list[str] = []
    seen = 0
    while error is not None and seen < 5:
        message = getattr(error, "message", None)
        if message:
            parts.append(str(message).strip())
        error = getattr(error, "cause", None) or getattr(error, "context", None)
        seen += 1
    return "\n".join(parts)


def job_asset_keys(repository_def: Any) -> Callable[[str], AbstractSet[str]]:
    """A cached lookup job name → its executable asset keys (empty for a job not in the code)."""
    cache: dict[str, frozenset[str]] = {}

    def lookup(job_name: str) -> frozenset[str]:
        if job_name not in cache:
            try:
                job = repository_def.get_job(job_name)
                keys = job.asset_layer.executable_asset_keys
            except Exception:  # a job of another code location, or one removed since
                keys = ()
            cache[job_name] = frozenset(key.to_user_string() for key in keys)
        return cache[job_name]

    return lookup


def dbt_unique_ids_by_asset(asset_graph: BaseAssetGraph) -> dict[str, str]:
    """Asset user string → dbt unique_id (``dbt.translator.unique_ids_by_asset_key``)."""
    by_key = unique_ids_by_asset_key(getattr(asset_graph, "assets_defs", ()))
    return {key.to_user_string(): unique_id for key, unique_id in by_key.items()}


def assets_by_step(asset_graph: BaseAssetGraph) -> dict[str, frozenset[str]]:
    """Op name (the step key in asset jobs) → the asset keys it computes."""
    result: dict[str, frozenset[str]] = {}
    for assets_def in getattr(asset_graph, "assets_defs", ()):
        if assets_def.is_executable:
            keys = frozenset(key.to_user_string() for key in assets_def.keys)
            result[assets_def.node_def.name] = (
                result.get(assets_def.node_def.name, frozenset()) | keys
            )
    return result


def dbt_adapter_type(asset_graph: BaseAssetGraph) -> str | None:
    """The dbt adapter ("duckdb", "postgres") from the manifest dagster-dbt keeps in metadata."""
    for assets_def in getattr(asset_graph, "assets_defs", ()):
        for metadata in (assets_def.metadata_by_key or {}).values():
            wrapper = metadata.get("dagster_dbt/manifest")
            if wrapper is None:
                continue
            manifest = getattr(wrapper, "manifest", wrapper)
            if isinstance(manifest, Mapping):
                adapter = (manifest.get("metadata") or {}).get("adapter_type")
                return str(adapter) if adapter else None
            return None
    return None
