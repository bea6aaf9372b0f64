"""The asset jobs: the nightly pipeline, the weekly full refresh, recovery from artifacts
and slim CI. Production jobs never select slim CI's ``ci/`` assets, and slim CI selects
nothing else. ``keep_subset_jobs``: a retry's asset-selection subset job, built once per
process and selection."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    JobDefinition,
    RepositoryDefinition,
    define_asset_job,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.dbt.assets import DBT_OP_NAME
from orchestration.ingest.assets import INGEST_GROUP
from orchestration.settings import Settings
from orchestration.slim_ci.assets import CI_OP_NAME
from orchestration.slim_ci.translator import CI_GROUP
from orchestration.tags import PIPELINE_TAG
from orchestration.warehouse import warehouse_tags

DAILY_PIPELINE = "daily_pipeline"
WEEKLY_FULL_REFRESH = "weekly_full_refresh"
RECOVER_FROM_ARTIFACTS = "recover_from_artifacts"
SLIM_CI = "slim_ci"


def build_jobs(settings: Settings) -> list[UnresolvedAssetJobDefinition]:
    production = AssetSelection.all() - AssetSelection.groups(CI_GROUP)
    daily = define_asset_job(
        DAILY_PIPELINE,
        selection=production,
        description="Ingestion → dbt build → reports. Recover a failure from the UI "
        "(Re-execute → From failure / From asset failure) or let retry_failed_assets_sensor do it.",
        tags={PIPELINE_TAG: DAILY_PIPELINE, **warehouse_tags(settings)},
    )
    weekly = define_asset_job(
        WEEKLY_FULL_REFRESH,
        selection=production,
        description="Like daily_pipeline, with `dbt build --full-refresh`.",
        config={"ops": {DBT_OP_NAME: {"config": {"full_refresh": True}}}},
        tags={PIPELINE_TAG: WEEKLY_FULL_REFRESH, **warehouse_tags(settings)},
    )
    recover = define_asset_job(
        RECOVER_FROM_ARTIFACTS,
        selection=production - AssetSelection.groups(INGEST_GROUP),
        description="dbt + downstream, for recovery from stored dbt artifacts: set "
        "ops.dbt_models.config.retry_from_run_id (a Dagster run) or retry_from_artifacts (a "
        "run_results.json in the artifact store, also from dbt runs outside Dagster).",
        tags={PIPELINE_TAG: RECOVER_FROM_ARTIFACTS, **warehouse_tags(settings)},
    )
    slim_ci = define_asset_job(
        SLIM_CI,
        selection=AssetSelection.groups(CI_GROUP),
        description="dbt build --select state:modified+ --defer --state <the latest successful "
        "production run's manifest> into the CI target (DBT_CI_TARGET, default schema ci). "
        f"Its assets are ci/…: production's are never touched. ops.{CI_OP_NAME}.config: "
        "production_run_id, without_production_state (build_all | skip).",
        tags={PIPELINE_TAG: SLIM_CI, **warehouse_tags(settings)},
    )
    return [daily, weekly, recover, *([slim_ci] if settings.slim_ci else [])]


SUBSET_JOBS_KEPT = 4
"""Asset-selection subsets of the repository's jobs kept per process (each holds its own asset
graph of the whole project: a few MB at 1,000 models)."""


def keep_subset_jobs(repository: RepositoryDefinition) -> None:
    """Build each asset-selection subset of a job once per process, not once per request.

    A retry of some of a job's assets (*From asset failure*, the retry sensor's run request) is
    an asset selection, and Dagster builds its subset job from scratch every time one is asked
    for: the code server builds it to send the job's snapshot, then again to plan the run —
    0.3–0.4 s each at 1,000 models, most of it turning every unselected asset into a stub. The
    same selection gives the same job, so the second request reuses the first's. Op
    selections and whole jobs go the stock way.
    """
    build = repository.get_maybe_subset_job_def

    @functools.lru_cache(maxsize=SUBSET_JOBS_KEPT)
    def asset_subset(
        job_name: str, assets: frozenset[AssetKey], checks: frozenset[AssetCheckKey] | None
    ) -> JobDefinition:
        return build(job_name, asset_selection=assets, asset_check_selection=checks)

    def get_maybe_subset_job_def(
        job_name: str,
        op_selection: Iterable[str] | None = None,
        asset_selection: Iterable[AssetKey] | None = None,
        asset_check_selection: Iterable[AssetCheckKey] | None = None,
    ) -> JobDefinition:
        if op_selection or not (asset_selection or asset_check_selection):
            return build(job_name, op_selection, asset_selection, asset_check_selection)
        checks = None if asset_check_selection is None else frozenset(asset_check_selection)
        return asset_subset(job_name, frozenset(asset_selection or ()), checks)

    repository.get_maybe_subset_job_def = get_maybe_subset_job_def  # type: ignore[method-assign]
