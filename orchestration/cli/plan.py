"""``python -m orchestration plan --run-id ID [--json]``: the recovery plan, launched nowhere.

The same plan a *From failure* re-execution or ``retry_from_run_id`` would execute, read from
the instance in ``DAGSTER_HOME`` and the artifact store, printed as a table (or JSON) with the
reason each asset is in or out.
"""

from __future__ import annotations

import argparse
import json
import sys

from orchestration.errors import OrchestrationError
from orchestration.recovery import RetryPlan


def render_table(plan: RetryPlan) -> str:
    """A plain-text table: rebuilt assets with reasons, then carried-over assets."""
    rows = [("ACTION", "ASSET", "REASON", "DETAIL")]
    for asset in plan.assets:
        detail = asset.detail
        if asset.caused_by:
            detail = f"{detail} (caused by {', '.join(asset.caused_by)})"
        if asset.batches:
            detail = f"{detail} [re-runs only these microbatch windows]"
        rows.append(("re-run", asset.key, asset.reason.value, detail))
    for carried in plan.carried_over:
        rows.append(("keep", carried.key, "succeeded", f"in run {carried.run_id}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
        for row in rows
    ]
    refresh = (
        "yes: the failed run was a full refresh, so the retry passes --full-refresh"
        " (not for re-run microbatch windows)"
        if plan.full_refresh
        else "no (an incremental run: models build incrementally, as in the failed run)"
    )
    header = [
        f"Plan for run {plan.parent_run_id} (chain root {plan.root_run_id})",
        plan.summary(),
        f"Full refresh: {refresh}",
        "",
    ]
    footer = [f"warning: {w}" for w in plan.warnings]
    footer += [
        f"unknown node (not in today's manifest): {u.unique_id} [{u.status}]"
        for u in plan.unknown_nodes
    ]
    footer += [f"not an asset: {n.unique_id} — {n.note}" for n in plan.not_assets]
    return "\n".join(header + lines + ([""] + footer if footer else []))


def compute_plan(run_id: str) -> RetryPlan:
    from dagster import DagsterInstance

    from orchestration.dbt.assets import translator
    from orchestration.dbt_cloud.workspace import backend_manifest
    from orchestration.definitions import build_definitions
    from orchestration.history.runs import dbt_node_index, plan_for_run
    from orchestration.resources import ArtifactStoreResource
    from orchestration.settings import load_settings
    from orchestration.slim_ci.assets import ci_translator
    from orchestration.slim_ci.state import is_slim_ci_run

    settings = load_settings()
    defs = build_definitions()
    store = ArtifactStoreResource(uri=settings.artifacts_uri).open()
    with DagsterInstance.get() as instance:
        # A slim CI run's assets are ci/…: its dbt nodes translate through CI's translator.
        keys = ci_translator() if is_slim_ci_run(instance, run_id) else translator()
        return plan_for_run(
            instance,
            run_id,
            asset_graph=defs.resolve_asset_graph(),
            index=dbt_node_index(backend_manifest(settings, defs), keys),
            store=store,
        )


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        plan = compute_plan(args.run_id)
    except OrchestrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, sort_keys=True))
    else:
        print(render_table(plan))
    return 0


def add_plan_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    plan = sub.add_parser(
        "plan", help="dry run: what a recovery of RUN_ID would re-run, and why (launches nothing)"
    )
    plan.add_argument("--run-id", required=True)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(func=cmd_plan)
