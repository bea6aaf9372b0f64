"""A bare ``@dbt_assets`` over a manifest: the baseline our Definitions' load is compared to.

``python benchmarks/scripts/bare_load.py MANIFEST`` — what the dagster-dbt docs show, nothing
more: one ``@dbt_assets`` op with the default translator, one ``Definitions``.
"""

import sys
from pathlib import Path

from dagster import AssetExecutionContext, Definitions
from dagster_dbt import DbtCliResource, dbt_assets

manifest = Path(sys.argv[1])


@dbt_assets(manifest=manifest)
def bare_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


defs = Definitions(
    assets=[bare_dbt_models],
    resources={"dbt": DbtCliResource(project_dir=str(manifest.parent.parent))},
)
