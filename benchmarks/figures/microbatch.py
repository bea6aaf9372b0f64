"""Figure 7: batch-level recovery of a dbt microbatch model, batches re-run ÷ batches failed.

Our own project (``dbt_project/``: ``fct_fx_rates_by_day``, one batch per day of the
``ORCHESTRATION_MICROBATCH_DAYS`` window), not a synthetic one: the generator has no microbatch
models. One day's batch fails with a genuine database error (an injected transient fault), the
model ends ``partial success``, and the run is recovered with *From failure* as the UI launches
it. From the recovery's stored run_results we count the batches dbt ran; the target is 1.00.

Dagster's native *From asset failure* selects the whole model (dagster-dbt records nothing for a
partial-success model), so stock dagster-dbt rebuilds every batch of the window: that column is
the model's batch count in the failed run, which is what a whole-model build runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.env import BenchEnv
from benchmarks.timing import progress
from orchestration.artifacts.store import find_run_results_keys, open_store
from orchestration.settings import REPO_ROOT

MODEL = "fct_fx_rates_by_day"
DAYS = 120
TARGET_RATIO = 1.0


class OwnProjectEnv(BenchEnv):
    """A BenchEnv on the repository's dbt project, with its warehouse inside ``root``."""

    @property
    def duckdb_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def environ(self, **extra: str) -> dict[str, str]:
        return super().environ(
            ORCHESTRATION_MICROBATCH_DAYS=str(DAYS), ORCHESTRATION_SOURCE_FRESHNESS="0", **extra
        )


def model_batches(env: BenchEnv, run_id: str) -> tuple[int, int]:
    """(successful, failed) batches of the model over every dbt invocation of ``run_id``."""
    import json

    store = open_store(str(env.artifacts_dir))
    succeeded = failed = 0
    for key in find_run_results_keys(store, run_id):
        for result in json.loads(store.get_bytes(key))["results"]:
            if result["unique_id"].endswith(f".{MODEL}") and result.get("batch_results"):
                succeeded += len(result["batch_results"]["successful"])
                failed += len(result["batch_results"]["failed"])
    return succeeded, failed


def run(work: Path) -> dict[str, Any]:
    env = OwnProjectEnv(REPO_ROOT / "dbt_project", work / "microbatch").reset()
    env.parse()
    day = (datetime.now(UTC).date() - timedelta(days=DAYS // 2)).isoformat()
    env.faults().inject(MODEL, batch=day, times=1)
    progress(f"microbatch: daily_pipeline with the batch of {day} failing")
    failed = env.run_job("daily_pipeline")
    if failed.success:
        raise RuntimeError("the daily_pipeline with a faulted batch succeeded")
    ok, failed_batches = model_batches(env, failed.run_id)
    progress("microbatch: From failure")
    recovery = env.run_job(
        "daily_pipeline", from_failure_of=failed.run_id, tags={"dagster/is_resume_retry": "true"}
    )
    rerun_ok, rerun_failed = model_batches(env, recovery.run_id)
    rerun = rerun_ok + rerun_failed
    whole = ok + failed_batches
    return {
        "model": MODEL,
        "batches": whole,
        "failed_batches": failed_batches,
        "rerun_batches": rerun,
        "ratio": rerun / failed_batches if failed_batches else float("nan"),
        "native_from_asset_failure_batches": whole,
        "native_ratio": whole / failed_batches if failed_batches else float("nan"),
        "recovery_succeeded": recovery.success,
        "failed_run_s": failed.wall_s,
        "recovery_s": recovery.wall_s,
        "target_ratio": TARGET_RATIO,
    }
