"""The dbt Cloud workspace (dagster-dbt's resource), built from the environment.

The workspace is deliberately *not* registered as a Dagster resource: a resource's fields are
part of the job's config schema and snapshot, which Dagster stores with every run, and the
token must never be stored anywhere. It is rebuilt from the environment in each process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from dagster import AssetsDefinition, Definitions
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
from dagster_dbt.cloud_v2.resources import (
    DbtCloudCredentials,
    DbtCloudWorkspace,
    get_dagster_adhoc_job_name,
)

from orchestration.errors import ConfigurationError
from orchestration.settings import DbtCloudSettings, Settings


def build_workspace(cloud: DbtCloudSettings) -> DbtCloudWorkspace:
    """One workspace (and dagster-dbt client) per dbt Cloud environment and process, keyed by
    what identifies the environment only: a run's other settings (timeout, job) are no
    reason for a new one."""
    return _workspace(
        cloud.account_id, cloud.token, cloud.url, cloud.project_id, cloud.environment_id
    )


@functools.cache
def _workspace(
    account_id: int, token: str, url: str, project_id: int, environment_id: int
) -> DbtCloudWorkspace:
    return DbtCloudWorkspace(
        credentials=DbtCloudCredentials(account_id=account_id, token=token, access_url=url),
        project_id=project_id,
        environment_id=environment_id,
    )


def adhoc_job_id(workspace: DbtCloudWorkspace) -> int:
    """The id of dagster-dbt's ad hoc job, the job runs use when ``DBT_CLOUD_JOB_ID`` is unset.
    Looked up by its name (one request): the workspace's own accessor would parse again."""
    name = get_dagster_adhoc_job_name(
        project_id=workspace.project_id, environment_id=workspace.environment_id
    )
    client = workspace.get_client()
    for job in client.list_jobs(
        project_id=workspace.project_id, environment_id=workspace.environment_id
    ):
        if job.get("name") == name:
            return int(job["id"])
    raise ConfigurationError(
        f"dbt Cloud has no job named {name} (dagster-dbt creates it when the code location "
        "loads): reload the code location, or set DBT_CLOUD_JOB_ID to the job to run."
    )


def assets_manifest(assets_def: AssetsDefinition) -> Mapping[str, Any]:
    """The manifest a dbt assets definition was built from (dagster-dbt keeps it in each
    asset's metadata). For dbt Cloud that is the manifest of the parse at code load — or,
    in a run worker, of the state Dagster stored then — so nothing parses twice. Asking the
    workspace again would: dagster-dbt builds the specs on a copy of the workspace, whose
    cached parse the original does not see."""
    manifest, _, _ = get_manifest_and_translator_from_dbt_assets([assets_def])
    return manifest


def backend_manifest(settings: Settings, defs: Definitions) -> Mapping[str, Any]:
    """The manifest of ``defs``' dbt op: dbt Cloud's when dbt runs there, else the local
    project's (the plan CLI indexes dbt nodes with the one the assets came from)."""
    if settings.dbt_cloud is not None:
        from orchestration.dbt.assets import DBT_OP_NAME

        for assets_def in defs.resolve_asset_graph().assets_defs:
            if assets_def.node_def.name == DBT_OP_NAME:
                return assets_manifest(assets_def)
    from orchestration.dbt.project import load_manifest

    return load_manifest(settings)
