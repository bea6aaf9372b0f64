"""Every run tag and metadata key the project reads or writes, in one place.

Dagster's own tags are listed where we read them. Ours live under ``orchestration/`` so that a
filter in the UI (``orchestration/retry_root=<run>``) finds every run of a recovery chain.
"""

# Dagster's, read to follow a run's lineage and to tell the UI's re-executions apart.
PARENT_RUN_TAG = "dagster/parent_run_id"
ROOT_RUN_TAG = "dagster/root_run_id"
RESUME_RETRY_TAG = "dagster/is_resume_retry"
"""Set by the UI's *Re-execute → From failure* (step-level)."""

# Ours, on runs.
PIPELINE_TAG = "orchestration/pipeline"
WAREHOUSE_TAG = "orchestration/warehouse"
"""The dbt adapter type: the key of the deploy/ run-queue limit per warehouse."""
RETRY_OF_TAG = "orchestration/retry_of"
RETRY_ROOT_TAG = "orchestration/retry_root"
ATTEMPT_TAG = "orchestration/attempt"
TRIGGER_TAG = "orchestration/trigger"
PLAN_SUMMARY_TAG = "orchestration/plan_summary"
PLAN_REASONS_TAG = "orchestration/plan_reasons"
FULL_REFRESH_TAG = "orchestration/full_refresh"
CI_STATE_TAG = "orchestration/ci_state_run"
"""On a slim CI run: the production run whose manifest it compared against and deferred to
(``CI_NO_STATE``: there was none). Its re-executions and retries read it to defer to the
same one."""
CI_NO_STATE = "none"

# Ours, on materializations.
CARRIED_OVER_METADATA_KEY = "orchestration/carried_over_from"
REBUILT_METADATA_KEY = "orchestration/rebuilt"
REBUILT_BECAUSE_METADATA_KEY = "orchestration/rebuilt_because"
REASON_DETAIL_METADATA_KEY = "orchestration/reason_detail"
PLAN_ORIGIN_METADATA_KEY = "orchestration/plan_origin"
REBUILT_BATCHES_METADATA_KEY = "orchestration/rebuilt_batches"
"""On a microbatch model rebuilt batch by batch: the event-time windows it re-ran."""
PLAN_BATCHES_TAG = "orchestration/plan_batches"
"""On a retry run: ``{asset: [[start, end], …]}``, the microbatch windows it re-runs."""
RESUME_ASSET_RETRY_TAG = "dagster/is_asset_resume_retry"
"""Set by the UI's *Re-execute → From asset failure*."""
RUN_WORKER_PID_TAG = "orchestration/run_worker_pid"
"""On a run started by ``WarmRunLauncher``: its process, which terminate signals."""
