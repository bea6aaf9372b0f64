"""A Python asset downstream of a mart: the place where recovery meets non-dbt work.

``revenue_report`` summarises the mart named by ``ORCHESTRATION_REPORT_MODEL`` (by default
``fct_revenue_by_owner``). It exists only when that model is in the manifest, so another dbt
project placed in ``DBT_PROJECT_DIR`` loads without it.
"""

from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MetadataValue, asset

from orchestration.faults.store import FaultStore
from orchestration.ingest.assets import warehouse_target
from orchestration.ingest.warehouse import read_rows
from orchestration.settings import Settings, load_settings

REPORT_ASSET = "revenue_report"
PREVIEW_ROWS = 10


def build_report_asset(
    settings: Settings, model_nodes: Mapping[str, Mapping[str, Any]]
) -> AssetsDefinition | None:
    node = next((n for n in model_nodes.values() if n.get("name") == settings.report_model), None)
    if node is None:
        return None
    # schema.alias, not the manifest's relation_name: on DuckDB the database part is the file's
    # name at parse time, which differs between environments (DUCKDB_PATH).
    relation = f'"{node["schema"]}"."{node.get("alias") or node["name"]}"'

    @asset(
        name=REPORT_ASSET,
        deps=[AssetKey([settings.report_model])],
        group_name="reports",
        kinds={"python"},
        description=f"A summary of {settings.report_model}, ready to send to stakeholders.",
    )
    def revenue_report(context: AssetExecutionContext) -> dict[str, Any]:
        run_settings = load_settings()
        FaultStore.from_settings(run_settings).fire_python_fault(REPORT_ASSET)
        columns, rows = read_rows(
            warehouse_target(run_settings), f"select * from {relation} limit {PREVIEW_ROWS}"
        )
        total = read_rows(warehouse_target(run_settings), f"select count(*) from {relation}")[1]
        count = int(total[0][0]) if total else 0
        header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in rows)
        context.add_output_metadata(
            {"rows": count, "preview": MetadataValue.md(header + body), "source": relation}
        )
        return {"source": relation, "rows": count, "columns": list(columns)}

    return revenue_report
