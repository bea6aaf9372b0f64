"""Ingestion assets: land the raw tables the dbt sources read.

Their asset keys are the dbt sources' keys (``[source, table]``), so Dagster draws one graph,
ingestion → staging → marts. They attach only to sources the manifest really has: pointed at
another dbt project (``DBT_PROJECT_DIR``) without ``fx`` / ``crm`` sources, no ingestion asset
is defined and nothing here assumes our model names.
"""

import os
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Config,
    MaterializeResult,
    multi_asset,
)
from pydantic import Field

from orchestration.ingest.generators import (
    CRM_TABLES,
    FX_TABLES,
    IngestScale,
    RawTable,
    generate_crm,
    generate_fx,
)
from orchestration.ingest.warehouse import WarehouseTarget, replace_table
from orchestration.settings import Settings, load_settings

INGEST_GROUP = "ingestion"


class IngestConfig(Config):
    """Run config of an ingestion asset; unset values come from settings."""

    as_of: str | None = Field(default=None, description="Last day of data, YYYY-MM-DD (today).")
    fx_days: int | None = Field(default=None, description="Days of exchange rates.")
    companies: int | None = Field(default=None, description="CRM companies.")
    deals: int | None = Field(default=None, description="CRM deals.")


def warehouse_target(settings: Settings) -> WarehouseTarget:
    """The warehouse the dbt target writes to, for the raw tables."""
    if (settings.dbt_target or "duckdb") == "postgres":
        env = os.environ
        dsn = (
            f"host={env.get('DBT_POSTGRES_HOST', 'localhost')} "
            f"port={env.get('DBT_POSTGRES_PORT', '5432')} "
            f"user={env.get('DBT_POSTGRES_USER', 'postgres')} "
            f"dbname={env.get('DBT_POSTGRES_DBNAME', 'warehouse')}"
        )
        password = env.get("DBT_POSTGRES_PASSWORD")
        if password:
            dsn += f" password={password}"
        return WarehouseTarget(kind="postgres", postgres_dsn=dsn)
    return WarehouseTarget(kind="duckdb", duckdb_path=settings.duckdb_path)


def _scale(settings: Settings, config: IngestConfig) -> IngestScale:
    return IngestScale(
        fx_days=config.fx_days or settings.fx_days,
        companies=config.companies or settings.crm_companies,
        deals=config.deals or settings.crm_deals,
    )


def _as_of(config: IngestConfig) -> date:
    return date.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC).date()


def _key(table: RawTable) -> AssetKey:
    return AssetKey([table.source, table.name])


def _build_source_asset(
    name: str,
    tables: Sequence[RawTable],
    source_keys: Collection[AssetKey],
    generate: object,
    description: str,
) -> AssetsDefinition | None:
    present = [t for t in tables if _key(t) in source_keys]
    if not present:
        return None

    @multi_asset(
        name=name,
        specs=[
            AssetSpec(
                _key(t),
                group_name=INGEST_GROUP,
                description=f"{description}: raw table {t.schema}.{t.name}.",
                kinds={"python"},
                skippable=True,
            )
            for t in present
        ],
        can_subset=True,
    )
    def _ingest(context: AssetExecutionContext, config: IngestConfig) -> object:
        settings = load_settings()
        as_of = _as_of(config)
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        data = generate(_scale(settings, config), as_of=as_of, loaded_at=loaded_at)  # type: ignore[operator]
        target = warehouse_target(settings)
        for table in present:
            if _key(table) not in context.selected_asset_keys:
                continue
            rows = data[table.name]
            written = replace_table(target, table, rows)
            context.log.info(f"Loaded {written} rows into {table.schema}.{table.name}")
            yield MaterializeResult(
                asset_key=_key(table),
                metadata={"rows": written, "as_of": as_of.isoformat(), "warehouse": target.kind},
            )

    return _ingest


def build_ingest_assets(source_keys: Collection[AssetKey]) -> list[AssetsDefinition]:
    """Ingestion assets for the dbt sources in ``source_keys`` that we know how to produce."""
    built = [
        _build_source_asset(
            "ingest_fx_rates", FX_TABLES, source_keys, generate_fx, "Daily exchange rates"
        ),
        _build_source_asset(
            "ingest_crm_export", CRM_TABLES, source_keys, generate_crm, "CRM export"
        ),
    ]
    return [asset for asset in built if asset is not None]
