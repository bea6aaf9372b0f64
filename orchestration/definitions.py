"""The one assembly point: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

import functools
import gc

from dagster import AssetKey, Definitions, in_process_executor

from orchestration.dbt.assets import DBT_OP_NAME, build_dbt_assets, stage_plan
from orchestration.dbt.freshness import build_freshness_checks
from orchestration.dbt.project import load_manifest
from orchestration.dbt_cloud.workspace import assets_manifest
from orchestration.ingest.assets import build_ingest_assets
from orchestration.jobs import build_jobs, keep_subset_jobs
from orchestration.reports.assets import build_report_asset
from orchestration.resources import ArtifactStoreResource, build_io_manager
from orchestration.schedules import build_schedules
from orchestration.settings import load_settings
from orchestration.slim_ci.assets import build_ci_dbt_assets


@functools.cache
def build_definitions() -> Definitions:
    """Build once per process. The garbage collector is paused while building: a large
    manifest allocates millions of long-lived objects, and the collector's repeated passes
    over them were about half of a 10,000-model load (benchmarks/RESULTS.md, figure 5);
    they are then frozen out of future collections."""
    gc.disable()
    try:
        return _build_definitions()
    finally:
        gc.enable()
        gc.freeze()


def _build_definitions() -> Definitions:
    settings = load_settings()
    if settings.dbt_cloud is not None:
        # dbt runs on dbt Cloud: the assets come from the manifest dbt Cloud parsed.
        from orchestration.dbt_cloud.assets import build_dbt_cloud_assets

        dbt_assets_def = build_dbt_cloud_assets(settings)
        manifest = assets_manifest(dbt_assets_def)
    else:
        dbt_assets_def = build_dbt_assets(settings)
        manifest = load_manifest(settings)
    source_keys = {
        AssetKey([source["source_name"], source["name"]])
        for source in manifest.get("sources", {}).values()
    }
    ingest = build_ingest_assets(source_keys)
    ingested = {key for asset in ingest for key in asset.keys}
    models = {
        uid: node for uid, node in manifest["nodes"].items() if node.get("resource_type") == "model"
    }
    report = build_report_asset(settings, models)
    from orchestration.retry_sensor.sensor import build_sensors

    defs = Definitions(
        assets=[
            *ingest,
            dbt_assets_def,
            # Off by default: a second copy of every dbt asset costs load time in every
            # process (run workers too), and a production UI shows each model twice.
            *([build_ci_dbt_assets(settings)] if settings.slim_ci else []),
            *([report] if report else []),
        ],
        asset_checks=build_freshness_checks(manifest, ingested)
        # `dbt source freshness` runs local dbt: not where dbt runs on dbt Cloud.
        if settings.source_freshness and settings.dbt_cloud is None
        else [],
        jobs=build_jobs(settings),
        schedules=build_schedules(settings),
        sensors=build_sensors(settings),
        # One process per run: dbt parallelises inside its op (threads), a process per step
        # would add seconds of imports each, and DuckDB allows one writing process per file.
        executor=in_process_executor,
        resources={
            "artifacts": ArtifactStoreResource(uri=settings.artifacts_uri),
            "io_manager": build_io_manager(settings),
        },
    )
    check_run_order(defs, manifest)
    keep_subset_jobs(defs.get_repository_def())
    return defs


def check_run_order(defs: Definitions, manifest: dict) -> None:
    """Fail the load, naming both nodes, when Dagster's resolved lineage and dbt's DAG are
    cyclic together: no order of dbt invocations could then build the project
    (``orchestration.dbt.stages``)."""
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if assets_def.node_def.name == DBT_OP_NAME:
            stage_plan(manifest, assets_def)


def __getattr__(name: str) -> Definitions:
    """``defs`` is built on first access, not at import (module-level ``__getattr__``)."""
    if name == "defs":
        return build_definitions()
    raise AttributeError(name)


def job_by_name(name: str):  # noqa: ANN201 - Dagster's reconstruction entry point
    """Reconstruction entry point for ``execute_job`` (CLI, tests): job ``name`` of ``defs``."""
    return build_definitions().resolve_job_def(name)
