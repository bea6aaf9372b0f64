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


@functools.cache
def build_workspace(cloud: DbtCloudSettings) -> DbtCloudWorkspace:
    """One workspace per configuration and process: dagster-dbt caches the fetched
    workspace data (the manifest of a ``dbt parse`` run on dbt Cloud) on the object, so the
    op, the plan CLI and the Definitions share one parse."""
    return DbtCloudWorkspace(
        credentials=DbtCloudCredentials(
            account_id=cloud.account_id, token=cloud.token, access_url=cloud.url
        ),
        project_id=cloud.project_id,
        environment_id=cloud.environment_id,
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
