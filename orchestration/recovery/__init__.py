"""Recovery: pure logic that decides what a retry re-runs, and why.

Plain Python over plain data (sets of keys, parent maps, statuses): no Dagster context and no
I/O, so the UI, the sensor, the op and the CLI share one rule and it is testable in milliseconds.
"""

from orchestration.recovery.batches import BatchWindow, MicrobatchConfig
from orchestration.recovery.graph import AssetGraph, CheckRef, DbtNodeIndex, NotAsset
from orchestration.recovery.outcome import CheckOutcome, CheckStatus, RunOutcome, RunStatus
from orchestration.recovery.plan import (
    AssetState,
    CarriedOver,
    PlannedAsset,
    Reason,
    RetryPlan,
    UnknownNode,
    plan_from_asset_states,
    plan_from_run_results,
    plan_run_chain,
)

__all__ = [
    "AssetGraph",
    "AssetState",
    "BatchWindow",
    "CarriedOver",
    "CheckOutcome",
    "CheckRef",
    "CheckStatus",
    "DbtNodeIndex",
    "MicrobatchConfig",
    "NotAsset",
    "PlannedAsset",
    "Reason",
    "RetryPlan",
    "RunOutcome",
    "RunStatus",
    "UnknownNode",
    "plan_from_asset_states",
    "plan_from_run_results",
    "plan_run_chain",
]
