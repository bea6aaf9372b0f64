"""dbt Cloud's job *rerun* (restart from the point of failure), which dagster-dbt does not call.

``POST /api/v2/accounts/{account_id}/jobs/{job_id}/rerun/`` restarts the job's latest run the
way ``dbt retry`` does. It is used only where that is exactly our plan (the pure decision,
``orchestration.recovery.rerun``); otherwise the op triggers a run of the planned nodes. Two
requests are added to dagster-dbt's client, through its own request helper (authentication,
retries, timeouts): the rerun, and the job's latest run (a rerun restarts that one, so the run
being recovered must still be it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster_dbt.cloud_v2.client import DbtCloudWorkspaceClient
from dagster_dbt.cloud_v2.resources import DbtCloudWorkspace
from dagster_dbt.cloud_v2.run_handler import DbtCloudJobRunHandler

from orchestration.artifacts.store import ArtifactStore, artifact_key, read_run_index
from orchestration.dbt import argv
from orchestration.recovery.rerun import rerun_decision
from orchestration.tags import RETRY_OF_TAG


def rerun_job(client: DbtCloudWorkspaceClient, job_id: int) -> Mapping[str, Any]:
    """Restart job ``job_id``'s latest run from its point of failure; the new run's details."""
    return client._make_request(  # noqa: SLF001 - dagster-dbt's authenticated, retried request
        method="post", endpoint=f"jobs/{job_id}/rerun/", base_url=client.api_v2_url
    ).json()["data"]


def latest_run_id(client: DbtCloudWorkspaceClient, job_id: int) -> int | None:
    """The id of job ``job_id``'s most recent run."""
    runs = client._make_request(  # noqa: SLF001
        method="get",
        endpoint="runs/",
        base_url=client.api_v2_url,
        params={"job_definition_id": job_id, "order_by": "-id", "limit": 1},
    ).json()["data"]
    return int(runs[0]["id"]) if runs else None


def recovered_run_id(run: DagsterRun) -> str | None:
    """The Dagster run this one recovers: the sensor's ``retry_of``, else the UI's parent."""
    return run.tags.get(RETRY_OF_TAG) or run.parent_run_id


def stored_cloud_run(
    store: ArtifactStore, run_id: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """(the dbt Cloud run's identity, its run_results) as stored for Dagster run ``run_id``."""
    from orchestration.dbt_cloud.run import CLOUD_RUN_FILE

    try:
        invocations = read_run_index(store, run_id).invocations
        last = next(i for i in reversed(invocations) if CLOUD_RUN_FILE in i.files)
        if "run_results.json" not in last.files:
            return None
        identity = json.loads(store.get_bytes(artifact_key(run_id, last.label, CLOUD_RUN_FILE)))
        results = json.loads(store.get_bytes(artifact_key(run_id, last.label, "run_results.json")))
    except Exception:  # nothing stored, or unreadable: trigger a new run instead
        return None
    return identity, results


def rerun_handler(
    context: AssetExecutionContext,
    workspace: DbtCloudWorkspace,
    store: ArtifactStore,
    manifest: Mapping[str, Any],
    selection: argv.Selection,
    flags: Mapping[str, Any],
) -> tuple[DbtCloudJobRunHandler, str] | None:
    """The rerun of the recovered run's dbt Cloud run where it runs exactly ``selection``,
    else None (trigger a new run). ``flags``: the ``vars`` / ``full_refresh`` / ``fail_fast``
    this run would pass."""
    parent = recovered_run_id(context.run)
    stored = stored_cloud_run(store, parent) if parent else None
    if stored is None:
        return None
    identity, results = stored
    client = workspace.get_client()
    job_id, cloud_run_id = int(identity["job_id"]), int(identity["run_id"])
    args = results.get("args") or {}
    decision = rerun_decision(
        planned=None if selection.unique_ids is None else set(selection.unique_ids),
        statuses={r["unique_id"]: str(r["status"]) for r in results.get("results", ())},
        test_parents={
            uid: set((node.get("depends_on") or {}).get("nodes") or ())
            for uid, node in manifest["nodes"].items()
            if uid.startswith("test.")
        },
        cloud_status=str(identity.get("status")),
        is_latest_run_of_job=latest_run_id(client, job_id) == cloud_run_id,
        # run_results records an unset flag as None (vars as {}): compare as "empty".
        same_flags=all((args.get(name) or type(value)()) == value for name, value in flags.items()),
    )
    if not decision.use_rerun:
        context.log.info(f"Not rerunning dbt Cloud run {cloud_run_id}: {decision.reason}.")
        return None
    details = rerun_job(client, job_id)
    handler = DbtCloudJobRunHandler(
        job_id=job_id, run_id=int(details["id"]), args=["retry"], client=client
    )
    why = f"Rerunning dbt Cloud run {cloud_run_id} from its point of failure: {decision.reason}."
    return handler, why
