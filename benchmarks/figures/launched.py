"""Figure 9: a recovery launched the way the UI and the daemon launch it, cold and warm.

Figure 2 times a run executed in one fresh process (``execute_job``), which is what a run worker
costs but not how a click reaches one. Here each recovery is created as the webserver creates a
re-execution (``create_reexecuted_run``, its planned events included) and launched through the
instance's run launcher, against a workspace whose code server runs in its own process, as the
daemon's does (``benchmarks/launched_run.py``):

- *cold*: Dagster's ``DefaultRunLauncher`` — the code server spawns a fresh interpreter, which
  imports Dagster and dagster-dbt and loads the definitions before the first step;
- *warm*: ``WarmRunLauncher`` (the embedded instance's) — a fork of a worker that holds them.

Both for *From failure* (step-level: plans every asset of the dbt op) and, warm, *From asset
failure* (plans only the failed subset), the retry ``retry_failed_assets_sensor`` requests
(created as the sensor daemon creates it: the request is taken once, right after the failure,
and replayed each repeat, since the first recovery heals the assets the sensor watches), and
``recover_from_artifacts`` launched with ``retry_from_run_id``; side by side per repeat with
the floor, ``dbt build --select <exactly the needed set>``. Not timed: opening the workspace,
loading the warm worker (which a running daemon has done before) and the sensor's tick
(figure 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.env import BenchEnv, built_env, failed_run, models_in
from benchmarks.figures.recovery import TARGET_TIME_RATIO, UI_FROM_FAILURE_TAGS, PathRecord
from benchmarks.timing import progress, ratios

PATHS = {
    "from_failure_cold": ("default", "FROM_FAILURE"),
    "from_failure_warm": ("warm", "FROM_FAILURE"),
    "from_asset_failure_warm": ("warm", "FROM_ASSET_FAILURE"),
    "sensor_retry_warm": ("warm", "SENSOR_RETRY"),
    "artifacts_warm": ("warm", "ARTIFACTS"),
}


def measure(env: BenchEnv, graph: Any, repeats: int) -> dict[str, Any]:
    n = len(graph.parents)
    model, needed, failed = failed_run(env, graph, "middle", f"n={n}")
    request = env.sensor_request(failed.run_id)
    records = {name: PathRecord() for name in PATHS}
    create_s: dict[str, list[float]] = {name: [] for name in PATHS}
    floor = PathRecord()
    for repeat in range(repeats):
        progress(f"  n={n}: repeat {repeat + 1}/{repeats}")
        for name, (launcher, strategy) in PATHS.items():
            tags = UI_FROM_FAILURE_TAGS if strategy == "FROM_FAILURE" else {}
            run = env.launch_run(
                failed.run_id, launcher=launcher, strategy=strategy, tags=tags, request=request
            )
            records[name].failures += not run["success"]
            models = models_in(env.stored_run_results(run["run_id"]))
            records[name].add(models, needed, run["wall_s"], run["run_s"])
            create_s[name].append(run["create_s"])
        direct = env.dbt(["build", "--select", *sorted(needed)])
        floor.add(direct.models(), needed, direct.wall_s, None)
    paths = {}
    for name, record in records.items():
        paths[name] = record.to_dict(len(needed))
        paths[name]["create_s"] = create_s[name]
        paths[name]["time_ratio"] = ratios(record.wall_s, floor.wall_s).to_dict()
    progress(
        f"  n={n}: warm From failure ÷ floor "
        f"{ratios(records['from_failure_warm'].wall_s, floor.wall_s).fmt()}, cold "
        f"{ratios(records['from_failure_cold'].wall_s, floor.wall_s).fmt()}"
    )
    return {
        "failed_model": model,
        "needed": len(needed),
        "paths": paths,
        "floor_dbt_build_select": floor.to_dict(len(needed)),
    }


def run(work: Path, sizes: list[int | str], *, repeats: int) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for size in sizes:
        env, graph, _ = built_env(work, size, "launched")
        by_size[str(size)] = measure(env, graph, repeats)
    return {"target_time_ratio": TARGET_TIME_RATIO, "repeats": repeats, "sizes": by_size}
