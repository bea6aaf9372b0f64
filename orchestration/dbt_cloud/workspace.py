"""The dbt Cloud workspace (dagster-dbt's resource), built from the environment.

The workspace is deliberately *not* registered as a Dagster resource: a resource's fields are
part of the job's config schema and snapshot, which Dagster stores with every run, and the
token must never be stored anywhere. It is rebuilt from the environment in each process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from dagster_dbt.cloud_v2.resources import DbtCloudCredentials, DbtCloudWorkspace

from orchestration.settings import DbtCloudSettings, Settings


def build_workspace(cloud: DbtCloudSettings) -> DbtCloudWorkspace:
    """One workspace per dbt Cloud environment and process: dagster-dbt caches the fetched
    workspace data (the manifest of a ``dbt parse`` run on dbt Cloud) on the object, so the
    Definitions, the op and the plan CLI share one parse. Keyed by what identifies the
    environment only: a run's other settings (timeout, job) must not cause a second parse."""
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


def cloud_manifest(cloud: DbtCloudSettings) -> Mapping[str, Any]:
    """The manifest dbt Cloud parsed (at code load; from the stored state when Dagster
    reconstructs the code location in a run worker)."""
    return build_workspace(cloud).get_or_fetch_workspace_data().manifest


def backend_manifest(settings: Settings) -> Mapping[str, Any]:
    """The manifest the dbt assets were built from: dbt Cloud's when dbt runs there, else the
    local project's. The plan CLI and the op index dbt nodes with the same one."""
    if settings.dbt_cloud is not None:
        return cloud_manifest(settings.dbt_cloud)
    from orchestration.dbt.project import load_manifest

    return load_manifest(settings)
