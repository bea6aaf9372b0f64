"""The asset jobs: the nightly pipeline and the weekly full refresh."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.dbt.assets import DBT_OP_NAME
from orchestration.ingest.assets import INGEST_GROUP
from orchestration.settings import Settings
from orchestration.tags import PIPELINE_TAG
from orchestration.warehouse import warehouse_tags

DAILY_PIPELINE = "daily_pipeline"
WEEKLY_FULL_REFRESH = "weekly_full_refresh"
RECOVER_FROM_ARTIFACTS = "recover_from_artifacts"


def build_jobs(settings: Settings) -> list[UnresolvedAssetJobDefinition]:
    daily = define_asset_job(
        DAILY_PIPELINE,
        selection=AssetSelection.all(),
        description="Ingestion → dbt build → reports. Recover a failure from the UI "
        "(Re-execute → From failure / From asset failure) or let retry_failed_assets_sensor do it.",
        tags={PIPELINE_TAG: DAILY_PIPELINE, **warehouse_tags(settings)},
    )
    weekly = define_asset_job(
        WEEKLY_FULL_REFRESH,
        selection=AssetSelection.all(),
        description="Like daily_pipeline, with `dbt build --full-refresh`.",
        config={"ops": {DBT_OP_NAME: {"config": {"full_refresh": True}}}},
        tags={PIPELINE_TAG: WEEKLY_FULL_REFRESH, **warehouse_tags(settings)},
    )
    recover = define_asset_job(
        RECOVER_FROM_ARTIFACTS,
        selection=AssetSelection.all() - AssetSelection.groups(INGEST_GROUP),
        description="dbt + downstream, for recovery from stored dbt artifacts: set "
        "ops.dbt_models.config.retry_from_run_id (a Dagster run) or retry_from_artifacts (a "
        "run_results.json in the artifact store, also from dbt runs outside Dagster).",
        tags={PIPELINE_TAG: RECOVER_FROM_ARTIFACTS, **warehouse_tags(settings)},
    )
    return [daily, weekly, recover]
