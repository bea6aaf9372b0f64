"""How dbt nodes look in Dagster: groups by layer, owners and tags from dbt config.

Works for any dbt project: the layer is the first folder under ``models/`` (``staging``,
``marts``, …), owners come from ``meta.owner`` and tags from dbt tags. Asset keys stay
dagster-dbt's defaults (``[source, table]`` for sources, ``[model]`` for models), which is what
lets ingestion assets attach to the sources they produce.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dagster import AssetKey, AssetsDefinition
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings
from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY

_TAG_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class LayeredTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        explicit = super().get_group_name(dbt_resource_props)
        if explicit:
            return explicit
        fqn: Sequence[str] = dbt_resource_props.get("fqn") or ()
        if dbt_resource_props.get("resource_type") == "model" and len(fqn) > 2:
            return _TAG_SAFE.sub("_", fqn[1])
        return None

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        meta = (dbt_resource_props.get("config") or {}).get("meta") or dbt_resource_props.get(
            "meta", {}
        )
        owner = meta.get("owner")
        owners = [owner] if isinstance(owner, str) else list(owner or [])
        valid = [o for o in owners if "@" in o or o.startswith("team:")]
        return valid or super().get_owners(dbt_resource_props)

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        for tag in dbt_resource_props.get("tags") or ():
            tags.setdefault(_TAG_SAFE.sub("_", tag)[:63], "")
        return tags


def unique_ids_by_asset_key(assets_defs: Iterable[AssetsDefinition]) -> dict[AssetKey, str]:
    """Asset key → dbt unique_id of every dbt asset, from the metadata dagster-dbt puts on each
    spec: the mapping Dagster itself resolved (keys after table-name resolution)."""
    return {
        spec.key: unique_id
        for assets_def in assets_defs
        for spec in assets_def.specs
        if isinstance(
            unique_id := (spec.metadata or {}).get(DAGSTER_DBT_UNIQUE_ID_METADATA_KEY), str
        )
    }
