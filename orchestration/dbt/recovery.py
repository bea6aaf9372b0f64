"""Which dbt nodes the dbt op runs: the op's side of recovery (a thin adapter).

The decision itself is the pure planner's (``orchestration.recovery``); this module gathers
its inputs from the run's tags, the instance and the artifact store, and turns the plan into
a dbt selection plus the metadata that tells people why each asset was rebuilt or carried
over.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetExecutionContext, AssetKey, Output
from dagster_dbt import DagsterDbtTranslator

from orchestration.artifacts.store import ArtifactStore
from orchestration.dbt import argv

RESUME_RETRY_TAG = "dagster/is_resume_retry"
PARENT_RUN_TAG = "dagster/parent_run_id"
ROOT_RUN_TAG = "dagster/root_run_id"


@dataclass
class SelectionChoice:
    selection: argv.Selection
    log_lines: list[str] = field(default_factory=list)
    # asset user string → metadata added to its Output (why it was rebuilt)
    rebuilt_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    # asset key → run id it succeeded in (left out of this run)
    carried_over: dict[AssetKey, str] = field(default_factory=dict)

    def carried_over_outputs(self, context: AssetExecutionContext) -> Iterator[Output]:
        """Outputs for carried-over assets that a later step of this run consumes.

        A *From failure* re-execution re-runs the dbt step and every step downstream of it;
        a downstream step whose input was not yielded is skipped. So for a carried-over asset
        that such a step reads, we yield an Output marked ``orchestration/carried_over_from``:
        the data is the one built in that run, not rebuilt here.
        """
        if not self.carried_over:
            return
        own_keys = set(context.assets_def.keys)
        graph = context.job_def.asset_layer.asset_graph
        selected = context.selected_asset_keys
        for key, run_id in sorted(self.carried_over.items()):
            if key not in selected:
                continue
            children = graph.get(key).child_keys if graph.has(key) else set()
            if not any(child not in own_keys for child in children):
                continue
            yield Output(
                None,
                output_name=context.assets_def.get_output_name_for_asset_key(key),
                metadata={
                    "orchestration/carried_over_from": run_id,
                    "orchestration/rebuilt": False,
                },
            )


def unique_ids_by_key(
    manifest: Mapping[str, Any], translator: DagsterDbtTranslator
) -> dict[AssetKey, str]:
    """Asset key → dbt unique_id for every buildable node (models, seeds, snapshots)."""
    result: dict[AssetKey, str] = {}
    for unique_id, node in manifest["nodes"].items():
        if node.get("resource_type") in {"model", "seed", "snapshot"}:
            result[translator.get_asset_key(node)] = unique_id
    return result


def subset_selection(
    context: AssetExecutionContext,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
) -> argv.Selection:
    """Everything when the op runs whole, else exactly the selected assets' nodes."""
    selected = set(context.selected_asset_keys)
    if selected == set(context.assets_def.keys):
        return argv.Selection.everything()
    by_key = unique_ids_by_key(manifest, translator)
    return argv.Selection(tuple(sorted(by_key[key] for key in selected if key in by_key)))


def choose_selection(
    context: AssetExecutionContext,
    *,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    store: ArtifactStore,
    retry_from_run_id: str | None,
    retry_from_artifacts: str | None,
) -> SelectionChoice:
    """The dbt nodes this invocation runs (see ``orchestration.dbt.assets``)."""
    return SelectionChoice(selection=subset_selection(context, manifest, translator))
