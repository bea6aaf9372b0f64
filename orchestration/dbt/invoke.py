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
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version

from orchestration.artifacts.store import ArtifactStore
from orchestration.artifacts.upload import UploadReport, store_invocation_artifacts
from orchestration.dbt import argv
from orchestration.dbt.project import dbt_executable
from orchestration.faults.store import FaultStore
from orchestration.settings import Settings

_fallback_log = logging.getLogger(__name__)
DBT_EXIT_TIMEOUT_SECONDS = 300

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
    of subprocess per run (DESIGN.md)."""
    return version.parse(importlib.metadata.version("dbt-core"))


@dataclass
class InvocationOutcome:
    """Filled in while the invocation runs; read by the op after streaming."""

    args: list[str] = field(default_factory=list)
    run_results: Mapping[str, Any] | None = None
    upload: UploadReport | None = None
    spent_faults: list[str] = field(default_factory=list)
    succeeded: bool = False


def test_models_from_manifest(manifest: Mapping[str, Any]) -> dict[str, str]:
    """test unique_id → name of the model it is attached to."""
    result: dict[str, str] = {}
    for unique_id, node in manifest["nodes"].items():
        attached = node.get("attached_node")
        if unique_id.startswith("test.") and attached:
            result[unique_id] = attached.split(".")[-1]
    return result


def stream_dbt(
    context: AssetExecutionContext,
    *,
    settings: Settings,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    command: str = "build",
    selection: argv.Selection,
    full_refresh: bool = False,
    fail_fast: bool = False,
    extra_args: Sequence[str] = (),
    outcome: InvocationOutcome,
) -> Iterator[Any]:
    """Yield the Dagster events of one dbt invocation; store its artifacts no matter what."""
    faults = FaultStore(settings.faults_file)
    dbt_vars = faults.dbt_vars()
    run_id = context.run.run_id
    label = f"{context.op_execution_context.op.name}-{uuid.uuid4().hex[:8]}"
    target_path = settings.dbt_project_dir / "target" / "invocations" / f"{run_id[:8]}-{label}"
    args = argv.build_args(
        command,
        selection=selection,
        manifest=manifest,
        threshold=settings.selector_threshold,
        full_refresh=full_refresh,
        fail_fast=fail_fast,
        dbt_vars=dbt_vars,
        target=settings.dbt_target,
        extra=extra_args,
    )
    outcome.args = args
    use_selector = argv.uses_selector_file(selection, settings.selector_threshold)
    selectors = (
        argv.selectors_yaml(argv.selection_values(selection, manifest)) if use_selector else ""
    )
    if dbt_vars:
        context.log.warning(f"Injected faults are active for this invocation: {dbt_vars}")
    context.log.info(
        f"dbt {command}: "
        + (
            "whole project"
            if selection.is_everything
            else f"{len(selection.unique_ids or ())} selected nodes"
            + (" (via generated selectors.yml)" if use_selector else "")
        )
    )

    with contextlib.ExitStack() as stack:
        project_dir = settings.dbt_project_dir
        if use_selector:
            project_dir = stack.enter_context(shadow_project(project_dir, selectors))
        env = {
            **os.environ,
            **settings.dbt_env(),
            "DAGSTER_DBT_CLI": "true",
            "PYTHONUNBUFFERED": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_LOG_FORMAT": "json",
            "DBT_TARGET_PATH": str(target_path),
            "DBT_LOG_PATH": str(target_path),
            "DBT_PROFILES_DIR": str(settings.dbt_profiles_dir),
            "DBT_PROJECT_DIR": str(project_dir),
        }
        invocation: DbtCliInvocation | None = None
        closing = False
        try:
            invocation = DbtCliInvocation.run(
                args=[dbt_executable(), *args],
                env=env,
                manifest=manifest,
                dagster_dbt_translator=translator,
                project_dir=project_dir,
                target_path=target_path,
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
            raise
        finally:
            _finish(
                context.log if not closing else _fallback_log,
                context.run.run_id,
                context.op_execution_context.get_step_execution_context().step.key,
                settings,
                manifest,
                store,
                faults,
                target_path,
                label,
                command,
                invocation,
                outcome,
            )


def _finish(
    log: Any,
    run_id: str,
    step_key: str,
    settings: Settings,
    manifest: Mapping[str, Any],
    store: ArtifactStore,
    faults: FaultStore,
    target_path: Path,
    label: str,
    command: str,
    invocation: DbtCliInvocation | None,
    outcome: InvocationOutcome,
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
        if outcome.run_results is not None:
            outcome.spent_faults = faults.record_invocation(
                outcome.run_results, test_models=test_models_from_manifest(manifest)
            )
        if not target_path.is_dir():
            log.warning(f"dbt wrote no target folder at {target_path}; nothing stored.")
            return
        report = store_invocation_artifacts(
            store,
            run_id=run_id,
            label=label,
            command=command,
            step_key=step_key,
            succeeded=outcome.succeeded,
            target_path=target_path,
            attempts=settings.upload_attempts,
            backoff_seconds=settings.upload_backoff_seconds,
        )
        outcome.upload = report
        if report.complete:
            log.info(f"Stored dbt artifacts ({', '.join(report.stored)}) at {report.location}")
        else:
            log.warning(report.warning_text())
    except Exception as error:  # the artifact path must never mask the dbt outcome
        log.warning(
            f"Storing dbt artifacts failed unexpectedly ({type(error).__name__}: {error}); "
            f"files left at {target_path}."
        )
