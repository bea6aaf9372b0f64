"""Figure 3: a full build through Dagster ÷ the same ``dbt build`` run directly.

Both sides start cold in their own process, build the whole synthetic project with the same
threads, warehouse and profile, and alternate (direct, Dagster, direct, Dagster, …) so a burst
of load from other jobs on the shared machine hits both. The Dagster side is
``execute_job(daily_pipeline)`` on a SQLite instance in a temporary ``DAGSTER_HOME`` — what a
run worker does — and we also keep Dagster's own run duration and the size of the dbt log our
op stores (dagster-dbt forces JSON logs), to show where the difference goes.

Beside it, the same build *launched* as the schedule daemon launches a scheduled run: created
from the code server's job and plan, launched through ``WarmRunLauncher`` (the embedded
instance's), timed from creating the run to its end (``benchmarks/launched_run.py``, ``JOB``).
That is what a nightly ``daily_pipeline`` costs on a running deployment; the fresh process is
what it costs without the warm launcher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.env import built_env, models_in
from benchmarks.timing import Stats, progress, ratios

TARGET_RATIO_AT_1000 = 1.15


def run(work: Path, sizes: list[int | str], *, repeats: int) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for size in sizes:
        env, _, n = built_env(work, size, "overhead")  # a first build: tables to replace
        direct_s: list[float] = []
        dagster_s: list[float] = []
        launched_s: list[float] = []
        run_s: list[float] = []
        log_mb: list[float] = []
        for repeat in range(repeats):
            direct = env.dbt(["build"])
            if direct.returncode != 0 or len(direct.models()) != n:
                raise RuntimeError(f"direct dbt build of n={n} did not build {n} models")
            job = env.run_job("daily_pipeline")
            built = models_in(env.stored_run_results(job.run_id))
            if not job.success or len(built) != n:
                raise RuntimeError(f"daily_pipeline run {job.run_id} did not build {n} models")
            launched = env.launch_run(None, launcher="warm", strategy="JOB", tags={})
            built = models_in(env.stored_run_results(launched["run_id"]))
            if not launched["success"] or len(built) != n:
                raise RuntimeError(f"launched run {launched['run_id']} did not build {n} models")
            direct_s.append(direct.wall_s)
            dagster_s.append(job.wall_s)
            launched_s.append(launched["wall_s"])
            run_s.append(job.run_s)
            log = env.stored_file(job.run_id, "dbt.log")
            log_mb.append(log.stat().st_size / 2**20 if log else 0.0)
            progress(
                f"overhead n={n} {repeat + 1}/{repeats}: dbt {direct.wall_s:.1f}s, "
                f"Dagster {job.wall_s:.1f}s (run {job.run_s:.1f}s), "
                f"launched warm {launched['wall_s']:.1f}s"
            )
        by_size[str(size)] = {
            "ratio": ratios(dagster_s, direct_s).to_dict(),
            "dbt_build_s": Stats.of(direct_s).to_dict(),
            "dagster_process_s": Stats.of(dagster_s).to_dict(),
            "launched_warm_s": Stats.of(launched_s).to_dict(),
            "launched_ratio": ratios(launched_s, direct_s).to_dict(),
            "dagster_run_s": Stats.of(run_s).to_dict(),
            "per_model_overhead_ms": Stats.of(
                [(d - b) / n * 1000 for d, b in zip(dagster_s, direct_s, strict=True)]
            ).to_dict(),
            "stored_dbt_log_mb": Stats.of(log_mb).to_dict(),
        }
    return {"target_ratio_at_1000": TARGET_RATIO_AT_1000, "repeats": repeats, "sizes": by_size}
