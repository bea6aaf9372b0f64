"""The key space of slim CI's assets: ``ci/<production key>``, group ``slim_ci``.

Why a key space of its own, rather than materializing the production keys from a CI run:
Dagster's asset records keep one "latest run that planned it" and one "latest
materialization" per key, and everything that decides recovery reads them — the rule "the
latest run that planned an asset decides it", the retry sensor's failed-asset scan, the UI's
asset health. A CI success recorded on a production key would tell all three that a model
which failed in production had been rebuilt, when only a copy in a CI schema was; a CI
failure would make the sensor retry production. With ``ci/`` keys, CI runs form their own
chains over their own assets and production's records are never touched.

Sources keep their production keys: CI reads raw data where production reads it, so a CI
staging model depends on the production ingestion asset (or seed) that loads its source.
CI assets carry no ``dagster/table_name``: they do not own production's tables, and two
assets claiming one table name would make Dagster's table-name resolution ambiguous.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import AssetKey, AutomationCondition

from orchestration.dbt.translator import LayeredTranslator

CI_KEY_PREFIX = "ci"
CI_GROUP = "slim_ci"
_TABLE_NAME_KEY = "dagster/table_name"


def _is_source(dbt_resource_props: Mapping[str, Any]) -> bool:
    return dbt_resource_props.get("resource_type") == "source"


class SlimCiTranslator(LayeredTranslator):
    """Production's translation with CI keys, one group, no table names, no automation."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        key = super().get_asset_key(dbt_resource_props)
        return key if _is_source(dbt_resource_props) else key.with_prefix(CI_KEY_PREFIX)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if _is_source(dbt_resource_props):
            return super().get_group_name(dbt_resource_props)
        return CI_GROUP

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = dict(super().get_metadata(dbt_resource_props))
        if not _is_source(dbt_resource_props):
            metadata.pop(_TABLE_NAME_KEY, None)
        return metadata

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> AutomationCondition | None:
        """CI assets are built by ``slim_ci`` and its recoveries only, never by automation."""
        return None
