"""Run one dbt invocation inside a Dagster op: stream its events, always keep its artifacts.

We call dagster-dbt's ``DbtCliInvocation.run`` directly instead of ``DbtCliResource.cli``:
``cli()`` adds its own ``--select`` built from the op's asset subset (one argument holding
every name, which overflows the kernel's 128 KiB per-argument limit at a few thousand models)
and cannot run the recovery plan's node set. Here the selection is ours
(``orchestration.dbt.argv``) and large selections go through a generated ``selectors.yml`` in
a shadow copy of the project made of symlinks (cheap at 10,000 models, never edits the
user's project).

Whatever happens — success, a model error, dbt exiting non-zero, an exception while streaming
— the ``finally`` block stores the invocation's artifacts and removes its target folder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from packaging import version

from orchestration.artifacts.run_results import NODE_FAILED_STATUSES
from orchestration.artifacts.store import ArtifactStore
from orchestration.artifacts.upload import UploadReport, store_invocation_artifacts
from orchestration.dbt import argv
from orchestration.dbt.project import dbt_executable, dbt_subprocess_env
from orchestration.dbt.stages import StagePlan
from orchestration.faults.store import FaultStore
from orchestration.settings import Settings

_fallback_log = logging.getLogger(__name__)
DBT_EXIT_TIMEOUT_SECONDS = 300
DBT_STOP_GRACE_SECONDS = 30

# Entries of a project that must not be linked into a shadow copy: we write our own
# selectors.yml, and target/logs belong to the real project.
_SHADOW_SKIP = {"selectors.yml", "logs"}


@contextlib.contextmanager
def shadow_project(project_dir: Path, selectors_yaml: str) -> Iterator[Path]:
    """A temporary project folder of symlinks to ``project_dir`` plus our selectors.yml."""
    root = Path(tempfile.mkdtemp(prefix="orchestration-dbt-"))
    try:
        for entry in project_dir.iterdir():
            if entry.name not in _SHADOW_SKIP:
                (root / entry.name).symlink_to(entry.resolve())
        (root / "selectors.yml").write_text(selectors_yaml)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def dbt_cli_version() -> version.Version:
    """dbt-core's version from package metadata: instant, where ``dbt --version`` costs ~1.7 s
    of subprocess per run (measured in benchmarks/RESULTS.md)."""
    return version.parse(importlib.metadata.version("dbt-core"))


@dataclass
class InvocationOutcome:
    """Filled in while the invocation runs; read by the op after streaming."""

    args: list[str] = field(default_factory=list)
    run_results: Mapping[str, Any] | None = None
    upload: UploadReport | None = None
    spent_faults: list[str] = field(default_factory=list)
    succeeded: bool = False

    def absorb(self, stage: InvocationOutcome) -> None:
        """Fold one stage's outcome into the step's: the latest stage's artifacts, every
        stage's spent faults, success only if every stage succeeded."""
        self.args, self.run_results, self.upload = stage.args, stage.run_results, stage.upload
        self.spent_faults += stage.spent_faults
        self.succeeded = self.succeeded and stage.succeeded


def test_models_from_manifest(manifest: Mapping[str, Any]) -> dict[str, str]:
    """test unique_id → name of the model it is attached to."""
    result: dict[str, str] = {}
    for unique_id, node in manifest["nodes"].items():
        attached = node.get("attached_node")
        if unique_id.startswith("test.") and attached:
            result[unique_id] = attached.split(".")[-1]
    return result


_NOT_DONE_STATUSES = NODE_FAILED_STATUSES | {"skipped"}


def not_done_nodes(
    run_results: Mapping[str, Any] | None, ran: Sequence[str], manifest: Mapping[str, Any]
) -> set[str]:
    """Nodes of one invocation that did not finish: errored or skipped, and the parents of a
    failed test (dbt skips what depends on them). No run_results: nothing of it is trusted."""
    if run_results is None:
        return set(ran)
    nodes = manifest["nodes"]
    found: set[str] = set()
    for result in run_results.get("results", ()):
        uid = result.get("unique_id", "")
        if str(result.get("status", "")).lower() not in _NOT_DONE_STATUSES:
            continue
        if uid.startswith("test.") and uid in nodes:
            found |= set((nodes[uid].get("depends_on") or {}).get("nodes") or ())
        else:
            found.add(uid)
    return found


def stream_staged(
    context: AssetExecutionContext,
    *,
    stages: StagePlan,
    selection: argv.Selection,
    fail_fast: bool = False,
    outcome: InvocationOutcome,
    **invocation: Any,
) -> Iterator[Any]:
    """``stream_dbt`` once per stage (``orchestration.dbt.stages``), in order.

    A node whose upstream did not finish in an earlier stage is left out of later ones, as
    dbt itself skips it, and the step fails at the end with the first stage's dbt error; with
    ``fail_fast`` the first failing stage is the last. One stage: one plain invocation.
    """
    manifest = invocation["manifest"]
    parts = stages.split(selection.unique_ids, manifest) if stages.staged else []
    if len(parts) <= 1:
        yield from stream_dbt(
            context, selection=selection, fail_fast=fail_fast, outcome=outcome, **invocation
        )
        return
    whole_project = selection.is_everything and not invocation.get("state_modified")
    blocked: set[str] = set()
    first_error: DagsterDbtCliRuntimeError | None = None
    outcome.succeeded = True
    for number, unique_ids in enumerate(parts, 1):
        runnable = tuple(uid for uid in unique_ids if uid not in blocked)
        left_out = len(unique_ids) - len(runnable)
        note = f", {left_out} left out: an upstream did not finish" if left_out else ""
        context.log.info(f"dbt stage {number} of {len(parts)}: {len(runnable)} nodes{note}")
        if not runnable:
            continue
        part = InvocationOutcome()
        try:
            yield from stream_dbt(
                context,
                selection=_stage_selection(
                    runnable,
                    parts[: number - 1],
                    blocked,
                    rest_of_project=whole_project and number == len(parts),
                ),
                fail_fast=fail_fast,
                indirect_selection="cautious",
                outcome=part,
                **invocation,
            )
        except DagsterDbtCliRuntimeError as error:
            first_error = first_error or error
        finally:
            outcome.absorb(part)
        blocked |= stages.downstream(not_done_nodes(part.run_results, runnable, manifest))
        if first_error is not None and fail_fast:
            break
    if first_error is not None:
        raise first_error


def _stage_selection(
    runnable: tuple[str, ...],
    earlier: list[tuple[str, ...]],
    blocked: set[str],
    *,
    rest_of_project: bool,
) -> argv.Selection:
    """How one stage's nodes are put to dbt. The last stage of a whole-project build is "the
    rest of the project": it is spelled as its complement (the earlier stages' nodes and the
    blocked ones) when that is shorter, because dbt's cost of a selection grows with its
    number of criteria (``orchestration.dbt.argv``). ``fqn:*`` also takes in the project's
    exposures, saved queries and functions, which belong to the last stage."""
    others = blocked.union(*earlier)
    if not rest_of_project or len(others) >= len(runnable):
        return argv.Selection(runnable)
    return argv.Selection(runnable, complement=tuple(sorted(others)))


@dataclass(frozen=True)
class DbtCall:
    """One dbt invocation, decided before it starts: its arguments, folders and faults."""

    command: str
    args: list[str]
    label: str
    target_path: Path
    selectors_yaml: str | None
    """A generated selectors.yml when the selection is too large for the command line."""
    faults: FaultStore
    dbt_vars: Mapping[str, Any]
    """The injected faults passed to dbt as ``--vars`` (empty: none)."""

    def describe(self, selection: argv.Selection) -> str:
        if selection.is_everything:
            return f"dbt {self.command}: whole project"
        via = " (via generated selectors.yml)" if self.selectors_yaml else ""
        if selection.complement is not None:
            via = f", as every node but {len(selection.complement)}{via}"
        return f"dbt {self.command}: {len(selection.unique_ids or ())} selected nodes{via}"

    def env(self, settings: Settings, project_dir: Path) -> dict[str, str]:
        return dbt_subprocess_env(
            settings,
            DAGSTER_DBT_CLI="true",
            PYTHONUNBUFFERED="1",
            DBT_LOG_FORMAT="json",
            DBT_TARGET_PATH=str(self.target_path),
            DBT_LOG_PATH=str(self.target_path),
            DBT_PROFILES_DIR=str(settings.dbt_profiles_dir),
            DBT_PROJECT_DIR=str(project_dir),
        )


def plan_call(
    context: AssetExecutionContext,
    settings: Settings,
    manifest: Mapping[str, Any],
    command: str,
    selection: argv.Selection,
    **flags: Any,
) -> DbtCall:
    """Arguments, target folder and selectors file of one invocation (``flags``: full_refresh,
    fail_fast, indirect_selection, extra for ``argv.build_args``)."""
    faults = FaultStore.from_settings(settings)  # a no-op unless ORCHESTRATION_FAULTS_ENABLED=1
    dbt_vars = faults.dbt_vars()
    label = f"{context.op_execution_context.op.name}-{uuid.uuid4().hex[:8]}"
    run_id = context.run.run_id
    args = argv.build_args(
        command,
        selection=selection,
        manifest=manifest,
        threshold=settings.selector_threshold,
        dbt_vars=dbt_vars,
        target=settings.dbt_target,
        **flags,
    )
    selectors = None
    if argv.uses_selector_file(selection, settings.selector_threshold):
        values = argv.selection_values(selection, manifest)
        if selection.complement is not None:
            selectors = argv.complement_selectors_yaml(values)
        else:
            selectors = argv.selectors_yaml(
                values,
                flags.get("indirect_selection"),
                state_modified=flags.get("state_modified", False),
            )
    return DbtCall(
        command=command,
        args=args,
        label=label,
        target_path=settings.dbt_project_dir / "target" / "invocations" / f"{run_id[:8]}-{label}",
        selectors_yaml=selectors,
        faults=faults,
        dbt_vars=dbt_vars,
    )


def stream_dbt(
    context: AssetExecutionContext,
    *,
    settings: Settings,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    command: str = "build",
    selection: argv.Selection,
    outcome: InvocationOutcome,
    move_latest: bool = True,
    **flags: Any,
) -> Iterator[Any]:
    """Yield the Dagster events of one dbt invocation; store its artifacts no matter what.
    (``move_latest=False``: a slim CI invocation, which must not move ``latest.json``.)

    (A little over a screen: the try/except/finally around the stream is one unit — splitting
    it would separate the process from the code that stops and cleans up after it.)
    """
    call = plan_call(context, settings, manifest, command, selection, **flags)
    outcome.args = call.args
    if call.dbt_vars:
        context.log.warning(f"Injected faults are active for this invocation: {call.dbt_vars}")
    context.log.info(call.describe(selection))
    with contextlib.ExitStack() as stack:
        project_dir = settings.dbt_project_dir
        if call.selectors_yaml is not None:
            project_dir = stack.enter_context(shadow_project(project_dir, call.selectors_yaml))
        invocation: DbtCliInvocation | None = None
        closing = False
        try:
            invocation = DbtCliInvocation.run(
                args=[dbt_executable(), *call.args],
                env=call.env(settings, project_dir),
                manifest=manifest,
                dagster_dbt_translator=translator,
                # dbt reads the (shadow) project from DBT_PROJECT_DIR, but runs in the real
                # project folder: relative paths in a profile (a DuckDB file) stay the same.
                project_dir=settings.dbt_project_dir,
                target_path=call.target_path,
                raise_on_error=True,
                context=context,
                adapter=None,
                cli_version=dbt_cli_version(),
            )
            yield from invocation.stream()
            outcome.succeeded = True
        except GeneratorExit:
            # Dagster abandoned the step (e.g. an invariant error) and the generator is being
            # closed, possibly by the garbage collector in the middle of another event-log
            # write: logging through the context here would deadlock on the storage.
            closing = True
            if invocation is not None:
                stop_dbt(invocation.process)  # or dbt builds on, orphaned, after the step
            raise
        finally:
            step_key = context.op_execution_context.get_step_execution_context().step.key
            log = context.log if not closing else _fallback_log
            _finish(
                log,
                context.run.run_id,
                step_key,
                settings,
                manifest,
                store,
                call,
                invocation,
                outcome,
                move_latest=move_latest,
            )


def results_from_log(log_path: Path) -> dict[str, Any] | None:
    """``{"results": [...]}`` from the ``NodeFinished`` lines of dbt's JSON log (unique_id,
    status, message); ``None`` without a readable log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    results = []
    for line in lines:
        if '"NodeFinished"' not in line:
            continue
        try:
            data = json.loads(line)["data"]
        except (ValueError, KeyError, TypeError):
            continue
        run_result = data.get("run_result") or {}
        results.append(
            {
                "unique_id": (data.get("node_info") or {}).get("unique_id", ""),
                "status": run_result.get("status"),
                "message": run_result.get("message"),
            }
        )
    return {"results": results}


def stop_dbt(process: subprocess.Popen, grace_seconds: float = DBT_STOP_GRACE_SECONDS) -> None:
    """Interrupt a dbt process the way Ctrl-C does (dbt cancels its open queries), then kill
    it if it has not exited within ``grace_seconds``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _finish(
    log: Any,
    run_id: str,
    step_key: str,
    settings: Settings,
    manifest: Mapping[str, Any],
    store: ArtifactStore,
    call: DbtCall,
    invocation: DbtCliInvocation | None,
    outcome: InvocationOutcome,
    *,
    move_latest: bool = True,
) -> None:
    """Store artifacts, count down transient faults. Never raises: the run's own outcome
    (success or the dbt error being raised) must be what the user sees."""
    try:
        if invocation is not None:
            with contextlib.suppress(Exception):
                invocation.wait()
            # wait() may raise on the first error before dbt has exited (--fail-fast): let
            # dbt finish writing run_results.json before we read and upload it.
            with contextlib.suppress(Exception):
                invocation.process.wait(timeout=DBT_EXIT_TIMEOUT_SECONDS)
            with contextlib.suppress(Exception):
                outcome.run_results = invocation.get_artifact("run_results.json")
        # dbt-duckdb can crash on --fail-fast before writing run_results.json; its log still
        # says which nodes finished how, which is all the fault countdown needs.
        finished = outcome.run_results or results_from_log(call.target_path / "dbt.log")
        if finished is not None:
            outcome.spent_faults = call.faults.record_invocation(
                finished, test_models=test_models_from_manifest(manifest)
            )
        if not call.target_path.is_dir():
            log.warning(f"dbt wrote no target folder at {call.target_path}; nothing stored.")
            return
        report = store_invocation_artifacts(
            store,
            run_id=run_id,
            label=call.label,
            command=call.command,
            step_key=step_key,
            succeeded=outcome.succeeded,
            target_path=call.target_path,
            attempts=settings.upload_attempts,
            backoff_seconds=settings.upload_backoff_seconds,
            move_latest=move_latest,
        )
        outcome.upload = report
        if report.complete:
            log.info(f"Stored dbt artifacts ({', '.join(report.stored)}) at {report.location}")
        else:
            log.warning(report.warning_text())
    except Exception as error:  # the artifact path must never mask the dbt outcome
        log.warning(
            f"Storing dbt artifacts failed unexpectedly ({type(error).__name__}: {error}); "
            f"files left at {call.target_path}."
        )
