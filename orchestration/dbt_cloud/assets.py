"""The dbt op when dbt runs on dbt Cloud: same name, keys, checks, config and recovery.

dagster-dbt's ``dbt_cloud_assets`` defines the assets from the manifest dbt Cloud parsed; the
body is the local op's (``orchestration.dbt.assets.run_recovery_aware``: which nodes, why,
what is carried over), only the execution differs — one dbt Cloud run of the chosen nodes
(``orchestration.dbt_cloud.run``), or a *rerun* of the failed one where dbt Cloud's restart
from failure runs exactly the plan (``orchestration.dbt_cloud.rerun``).
"""

# No `from __future__ import annotations`: Dagster reads the op's parameter types at runtime.

import shlex
import sys
from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt.cloud_v2.asset_decorator import dbt_cloud_assets
from dagster_dbt.cloud_v2.run_handler import DbtCloudJobRunHandler

from orchestration.dbt import argv
from orchestration.dbt.assets import DBT_OP_NAME, DbtBuildConfig, run_recovery_aware, translator
from orchestration.dbt.selection import SelectionChoice
from orchestration.dbt_cloud.rerun import rerun_handler
from orchestration.dbt_cloud.run import stream_cloud_run
from orchestration.dbt_cloud.workspace import adhoc_job_id, assets_manifest, build_workspace
from orchestration.faults.store import FaultStore
from orchestration.resources import ArtifactStoreResource
from orchestration.settings import Settings, load_settings


def build_dbt_cloud_assets(settings: Settings) -> Any:
    """The dbt assets of the dbt Cloud project (``DBT_CLOUD_*``); loading them runs one
    ``dbt parse`` on dbt Cloud (dagster-dbt's ad hoc job), kept as code-location state."""
    assert settings.dbt_cloud is not None
    workspace = build_workspace(settings.dbt_cloud)

    @dbt_cloud_assets(workspace=workspace, name=DBT_OP_NAME, dagster_dbt_translator=translator())
    def dbt_models(
        context: AssetExecutionContext,
        config: DbtBuildConfig,
        artifacts: ArtifactStoreResource,
    ) -> Iterator[Any]:
        run_settings = load_settings()
        if run_settings.dbt_cloud is None:
            from orchestration.errors import ConfigurationError

            raise ConfigurationError(
                "This code location runs dbt on dbt Cloud, but DBT_CLOUD_* is not set in the "
                "run worker's environment; set it where the run worker starts."
            )
        manifest = assets_manifest(context.assets_def)
        store = artifacts.open()

        def execute(choice: SelectionChoice) -> Iterator[Any]:
            handler, command, description = start_run(
                context, run_settings, manifest, store, choice, config
            )
            return stream_cloud_run(
                context,
                handler=handler,
                settings=run_settings,
                manifest=manifest,
                translator=translator(),
                store=store,
                command=command,
                description=description,
            )

        yield from run_recovery_aware(context, config, store, manifest, execute)

    return dbt_models


def start_run(
    context: AssetExecutionContext,
    settings: Settings,
    manifest: Any,
    store: Any,
    choice: SelectionChoice,
    config: DbtBuildConfig,
) -> tuple[DbtCloudJobRunHandler, str, str]:
    """(handler, the dbt command it runs, a line for the log): the rerun of the failed dbt
    Cloud run where that runs exactly the plan, else the job triggered with the chosen
    nodes. The selection always goes on the command line: dbt Cloud runs the job's own
    checkout, so there is no generated selectors.yml to point it at."""
    assert settings.dbt_cloud is not None
    workspace = build_workspace(settings.dbt_cloud)
    dbt_vars = FaultStore.from_settings(settings).dbt_vars()
    flags = {"vars": dbt_vars, "full_refresh": config.full_refresh, "fail_fast": config.fail_fast}
    rerun = rerun_handler(context, workspace, store, manifest, choice.selection, flags)
    if rerun is not None:
        handler, why = rerun
        context.log.info(why)
        return handler, "retry", "rerun from the point of failure (dbt retry)"
    args = argv.build_args(
        "build",
        selection=choice.selection,
        manifest=manifest,
        threshold=sys.maxsize,
        full_refresh=config.full_refresh,
        fail_fast=config.fail_fast,
        dbt_vars=dbt_vars,
    )
    job_id = settings.dbt_cloud.job_id or adhoc_job_id(workspace)
    handler = DbtCloudJobRunHandler.run(job_id=job_id, args=args, client=workspace.get_client())
    return handler, "build", " ".join(shlex.quote(a) for a in ["dbt", *args])
