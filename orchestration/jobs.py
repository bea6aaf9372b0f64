"""The asset jobs: the nightly pipeline and the weekly full refresh."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.dbt.assets import DBT_OP_NAME

DAILY_PIPELINE = "daily_pipeline"
WEEKLY_FULL_REFRESH = "weekly_full_refresh"


def build_jobs() -> list[UnresolvedAssetJobDefinition]:
    daily = define_asset_job(
        DAILY_PIPELINE,
        selection=AssetSelection.all(),
        description="Ingestion → dbt build → reports. Recover a failure from the UI "
        "(Re-execute → From failure / From asset failure) or let retry_failed_assets_sensor do it.",
        tags={"orchestration/pipeline": DAILY_PIPELINE},
    )
    weekly = define_asset_job(
        WEEKLY_FULL_REFRESH,
        selection=AssetSelection.all(),
        description="Like daily_pipeline, with `dbt build --full-refresh`.",
        config={"ops": {DBT_OP_NAME: {"config": {"full_refresh": True}}}},
        tags={"orchestration/pipeline": WEEKLY_FULL_REFRESH},
    )
    return [daily, weekly]
