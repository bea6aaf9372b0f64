"""Which warehouse runs go to, as a run tag: deploy/dagster.yaml limits concurrent runs per
warehouse, so that nightly runs and sensor retries never overload it together."""

from __future__ import annotations

from orchestration.settings import Settings
from orchestration.tags import WAREHOUSE_TAG


def warehouse_tags(settings: Settings) -> dict[str, str]:
    """``{orchestration/warehouse: <dbt target>}`` (``duckdb`` when no target is set)."""
    return {WAREHOUSE_TAG: settings.dbt_target or "duckdb"}
