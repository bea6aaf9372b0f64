"""One dbt Cloud run of the dbt op, once started (triggered or rerun): poll, events, artifacts.

Triggering, polling, artifact downloads and the translation of ``run_results.json`` into
Dagster events are dagster-dbt's (``DbtCloudJobRunHandler``, ``DbtCloudJobRunResults``); this
module decides what to do when a run does not end well and stores the artifacts like a local
invocation does (``orchestration.artifacts.upload``), so recovery reads a dbt Cloud run
exactly as it reads a local one.

A run that is cancelled, times out (``DBT_CLOUD_RUN_TIMEOUT_SECONDS``, then it is cancelled
on dbt Cloud too) or leaves no ``run_results.json`` is treated like a killed local dbt
process: nothing without a materialization counts as done.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetCheckResult, AssetExecutionContext, Failure
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.cloud_v2.run_handler import DbtCloudJobRunHandler, DbtCloudJobRunResults
from dagster_dbt.cloud_v2.types import DbtCloudJobRunStatusType, DbtCloudRun

from orchestration.artifacts.store import ArtifactStore
from orchestration.artifacts.upload import ARTIFACT_FILES, store_invocation_artifacts
from orchestration.dbt.invocation import test_models_from_manifest
from orchestration.faults.store import FaultStore
from orchestration.settings import Settings

CLOUD_RUN_FILE = "dbt_cloud_run.json"
"""Stored next to a run's artifacts: which dbt Cloud job and run produced them (for rerun)."""

_STATUS_WORDS = {
    DbtCloudJobRunStatusType.SUCCESS: "success",
    DbtCloudJobRunStatusType.ERROR: "error",
    DbtCloudJobRunStatusType.CANCELLED: "cancelled",
}

_ENDED = {
    "error": "ended in error",
    "cancelled": "was cancelled",
    "timed out": "timed out after {timeout:g} s (DBT_CLOUD_RUN_TIMEOUT_SECONDS) and was "
    "cancelled on dbt Cloud",
}


@dataclass
class CloudOutcome:
    run_id: int
    job_id: int
    status: str = "unknown"  # success | error | cancelled | timed out
    href: str | None = None
    run_results: Mapping[str, Any] | None = None


def stream_cloud_run(
    context: AssetExecutionContext,
    *,
    handler: DbtCloudJobRunHandler,
    settings: Settings,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    command: str,
    description: str,
) -> Iterator[Any]:
    """Wait for ``handler``'s run, yield its assets' events, store its artifacts, and fail
    the step unless the run succeeded. ``command`` is the dbt command the run executes
    (``build``, or ``retry`` for a rerun), as the artifact index records it for local runs."""
    assert settings.dbt_cloud is not None
    outcome = CloudOutcome(run_id=handler.run_id, job_id=handler.job_id)
    context.log.info(f"dbt Cloud run {handler.run_id} of job {handler.job_id}: {description}")
    try:
        _wait(handler, outcome, settings.dbt_cloud.run_timeout_seconds)
        outcome.run_results = _artifact(handler, "run_results.json")
        if outcome.run_results is not None:
            events = DbtCloudJobRunResults(
                run_id=handler.run_id, run_results=outcome.run_results
            ).to_default_asset_events(
                client=handler.client,
                manifest=manifest,
                dagster_dbt_translator=translator,
                context=context,
            )
            yield from without_skipped_tests(events, outcome.run_results)
    finally:
        _finish(context, handler, outcome, settings, manifest, store, command)
    if outcome.status != "success":
        missing = "" if outcome.run_results else "; it left no run_results.json"
        ended = _ENDED.get(outcome.status, f"ended {outcome.status}").format(
            timeout=settings.dbt_cloud.run_timeout_seconds
        )
        raise Failure(
            f"dbt Cloud run {outcome.run_id} of job {outcome.job_id} {ended}{missing}. "
            f"See {outcome.href or 'the run in dbt Cloud'}; "
            f"`python -m orchestration plan --run-id {context.run.run_id}` shows what a "
            "recovery re-runs.",
            metadata={"dbt_cloud_run_id": outcome.run_id, "dbt_cloud_status": outcome.status},
        )


def without_skipped_tests(events: Iterator[Any], run_results: Mapping[str, Any]) -> Iterator[Any]:
    """dagster-dbt reports a test dbt *skipped* (its model failed) as a failed check; a local
    dbt build records nothing for it. Dropped here, so that the check is "did not execute"
    in both cases and recovery explains the model as errored or upstream-failed rather than
    check-failed — the same plan whichever way dbt ran."""
    skipped = {
        result.get("unique_id")
        for result in run_results.get("results", ())
        if str(result.get("status", "")).lower() == "skipped"
    }
    for event in events:
        if isinstance(event, AssetCheckResult):
            unique_id = (event.metadata or {}).get("unique_id")
            if getattr(unique_id, "value", unique_id) in skipped:  # a TextMetadataValue
                continue
        yield event


def _wait(handler: DbtCloudJobRunHandler, outcome: CloudOutcome, timeout: float) -> None:
    """Poll until the run ends. dagster-dbt cancels the run when Dagster interrupts the step;
    on a timeout it only raises, so the run is cancelled here (a run left going would keep
    writing to tables a recovery is about to rebuild)."""
    try:
        details = handler.client.poll_run(run_id=handler.run_id, poll_timeout=timeout)
    except Exception as error:
        if "did not complete within" not in str(error):
            raise
        outcome.status = "timed out"
        with contextlib.suppress(Exception):
            handler.cancel()
        return
    run = DbtCloudRun.from_run_details(run_details=details)
    outcome.status = _STATUS_WORDS.get(run.status, str(run.status))  # type: ignore[arg-type]
    outcome.href = run.url


def _artifact(handler: DbtCloudJobRunHandler, name: str) -> Mapping[str, Any] | None:
    """An artifact of the run, or None when dbt Cloud has none (the run died before it)."""
    try:
        if name not in handler.list_run_artifacts():
            return None
        return handler.client.get_run_artifact(run_id=handler.run_id, path=name)
    except Exception:
        return None


def _finish(
    context: AssetExecutionContext,
    handler: DbtCloudJobRunHandler,
    outcome: CloudOutcome,
    settings: Settings,
    manifest: Mapping[str, Any],
    store: ArtifactStore,
    command: str,
) -> None:
    """Download and store the artifacts, count down transient faults. Never raises: the run's
    own outcome must be what the user sees."""
    try:
        if outcome.run_results is not None:
            FaultStore.from_settings(settings).record_invocation(
                outcome.run_results, test_models=test_models_from_manifest(manifest)
            )
        folder = Path(tempfile.mkdtemp(prefix="dbt-cloud-"))
        _download(handler, outcome, folder)
        label = f"{context.op_execution_context.op.name}-cloud-{uuid.uuid4().hex[:8]}"
        report = store_invocation_artifacts(
            store,
            run_id=context.run.run_id,
            label=label,
            command=command,
            step_key=context.op_execution_context.get_step_execution_context().step.key,
            succeeded=outcome.status == "success",
            target_path=folder,
            files=(*ARTIFACT_FILES, CLOUD_RUN_FILE),
            attempts=settings.upload_attempts,
            backoff_seconds=settings.upload_backoff_seconds,
        )
        if report.complete:
            context.log.info(
                f"Stored dbt Cloud run {outcome.run_id}'s artifacts "
                f"({', '.join(report.stored)}) at {report.location}"
            )
        else:
            context.log.warning(report.warning_text())
    except Exception as error:  # the artifact path must never mask the dbt outcome
        context.log.warning(
            f"Storing dbt Cloud run {outcome.run_id}'s artifacts failed unexpectedly "
            f"({type(error).__name__}: {error})."
        )


def _download(handler: DbtCloudJobRunHandler, outcome: CloudOutcome, folder: Path) -> None:
    """run_results.json, manifest.json, the run's log as dbt.log, and the run's identity."""
    if outcome.run_results is not None:
        (folder / "run_results.json").write_text(json.dumps(outcome.run_results))
    manifest = _artifact(handler, "manifest.json")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with contextlib.suppress(Exception):
        logs = handler.get_run_logs()
        if logs:
            (folder / "dbt.log").write_text(logs)
    identity = {
        "account_id": handler.client.account_id,
        "job_id": outcome.job_id,
        "run_id": outcome.run_id,
        "status": outcome.status,
        "href": outcome.href,
    }
    (folder / CLOUD_RUN_FILE).write_text(json.dumps(identity, indent=1))
