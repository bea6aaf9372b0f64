"""Figures 1 and 2: how much a recovery re-runs, and how long it takes, against the floor.

For each size and each failure position (near the roots, in the middle, near the leaves) we make
one real failed run: a transient fault (``FaultStore.inject(model, times=1)``) in the synthetic
project, then ``daily_pipeline`` through Dagster. From that one run every recovery path starts:

- ours, *From failure* as the UI launches it (``ReexecutionOptions.from_failure`` plus the UI's
  ``dagster/is_resume_retry`` tag), and ``recover_from_artifacts`` with ``retry_from_run_id``;
- ours, *From failure* as plain Python launches it (no tag), on the smallest size only;
- the planner's own set (``python -m orchestration plan --run-id … --json``), launching nothing;
- ``dbt retry`` run directly on the failed run's stored artifacts (``--state``; ``--vars '{}'``
  clears the injected fault, like the transient fault clearing for the other paths);
- Dagster's native step-level *From failure* re-runs the whole dbt op, i.e. every model: its
  count is N, computed rather than run (our op intercepts that re-execution);
- the floor: ``dbt build --select <exactly the needed set>`` run directly.

"Needed" is failed ∪ downstream computed from the generator's own edges, not by our planner.
Executed models are read from each path's run_results.json (status success or error).

Figure 2's pair (ours *From failure* and the floor) runs ``repeats`` times side by side; the
secondary paths (``recover_from_artifacts``, ``dbt retry``) ``secondary_repeats`` times (their
model counts are deterministic; their times are reported beside, not as the figure), which keeps
the default run inside its hour on a shared 2-core machine.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import BenchEnv, built_env, failed_run, models_in
from benchmarks.timing import Stats, progress, ratios, run_process
from orchestration.settings import REPO_ROOT

POSITIONS = ("roots", "middle", "leaves")
UI_FROM_FAILURE_TAGS = {"dagster/is_resume_retry": "true"}
TARGET_TIME_RATIO = 1.25


@dataclass
class PathRecord:
    """What one recovery path did over the repeats."""

    executed: list[int] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    planned: list[int] = field(default_factory=list)
    failures: int = 0

    def add(self, models: set[str], needed: set[str], wall_s: float, run_s: float | None) -> None:
        self.executed.append(len(models))
        self.exact.append(models == needed)
        self.wall_s.append(wall_s)
        if run_s is not None:
            self.run_s.append(run_s)

    def to_dict(self, needed: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "executed": self.executed,
            "work_ratio": Stats.of([e / needed for e in self.executed]).to_dict(),
            "exactly_the_needed_set": all(self.exact),
            "wall_s": Stats.of(self.wall_s).to_dict(),
        }
        if self.run_s:
            data["dagster_run_s"] = Stats.of(self.run_s).to_dict()
        if self.planned:
            data["planned_assets"] = self.planned
        if self.failures:
            data["failed_runs"] = self.failures
        return data


def planner_keys(env: BenchEnv, run_id: str) -> set[str]:
    """The plan our code would execute, from the CLI (launches nothing)."""
    result = run_process(
        [sys.executable, "-m", "orchestration", "plan", "--run-id", run_id, "--json"],
        env=env.environ(),
        cwd=REPO_ROOT,
    ).check()
    plan = json.loads(result.stdout[result.stdout.index("{") :])
    return {asset["key"] for asset in plan["assets"]}


def retry_state(env: BenchEnv, run_id: str, name: str) -> Path:
    """A ``--state`` folder for ``dbt retry`` with the failed run's stored artifacts."""
    state = env.root / f"retry_state_{name}"
    state.mkdir(exist_ok=True)
    for artifact in ("run_results.json", "manifest.json"):
        stored = env.stored_file(run_id, artifact)
        if stored is None:
            raise RuntimeError(f"run {run_id} stored no {artifact}; cannot run dbt retry")
        shutil.copyfile(stored, state / artifact)
    return state


def measure_position(
    env: BenchEnv,
    graph: Any,
    position: str,
    *,
    repeats: int,
    secondary_repeats: int,
    untagged: bool,
) -> dict[str, Any]:
    n = len(graph.parents)
    model, needed, failed = failed_run(env, graph, position, f"n={n} {position}")
    planned = planner_keys(env, failed.run_id)
    state = retry_state(env, failed.run_id, position)
    paths: dict[str, PathRecord] = {
        name: PathRecord() for name in ("ours_from_failure", "ours_from_artifacts", "dbt_retry")
    }
    floor = PathRecord()
    for repeat in range(repeats):
        progress(f"  n={n} {position}: repeat {repeat + 1}/{repeats}")
        ours = env.run_job(
            "daily_pipeline", from_failure_of=failed.run_id, tags=UI_FROM_FAILURE_TAGS
        )
        paths["ours_from_failure"].failures += not ours.success
        models = models_in(env.stored_run_results(ours.run_id))
        paths["ours_from_failure"].add(models, needed, ours.wall_s, ours.run_s)
        paths["ours_from_failure"].planned.append(ours.planned_assets)

        direct = env.dbt(["build", "--select", *sorted(needed)])
        floor.add(direct.models(), needed, direct.wall_s, None)

        if repeat >= secondary_repeats:
            continue
        config = env.artifacts_run_config(failed.run_id)
        artifacts = env.run_job("recover_from_artifacts", run_config=config)
        paths["ours_from_artifacts"].failures += not artifacts.success
        models = models_in(env.stored_run_results(artifacts.run_id))
        paths["ours_from_artifacts"].add(models, needed, artifacts.wall_s, artifacts.run_s)
        paths["ours_from_artifacts"].planned.append(artifacts.planned_assets)

        retried = env.dbt(["retry", "--vars", "{}"], state=state)
        paths["dbt_retry"].failures += retried.returncode != 0
        paths["dbt_retry"].add(retried.models(), needed, retried.wall_s, None)

    if untagged:
        progress(f"  n={n} {position}: From failure via Python, untagged (once)")
        python_path = PathRecord()
        plain = env.run_job("daily_pipeline", from_failure_of=failed.run_id)
        python_path.failures += not plain.success
        models = models_in(env.stored_run_results(plain.run_id))
        python_path.add(models, needed, plain.wall_s, plain.run_s)
        paths["ours_from_failure_python_untagged"] = python_path

    result: dict[str, Any] = {
        "failed_model": model,
        "needed": len(needed),
        "failed_run_wall_s": round(failed.wall_s, 2),
        "paths": {name: record.to_dict(len(needed)) for name, record in paths.items()},
        "planner": {
            "planned": len(planned),
            "work_ratio": round(len(planned) / len(needed), 4),
            "exactly_the_needed_set": planned == needed,
        },
        "dagster_native_from_failure": {
            "executed": n,
            "work_ratio": round(n / len(needed), 4),
            "how": "computed: the step-level re-execution re-runs the whole dbt op",
        },
        "floor_dbt_build_select": floor.to_dict(len(needed)),
        "time_ratio": {
            name: ratios(paths[name].wall_s, floor.wall_s[: len(paths[name].wall_s)]).to_dict()
            for name in ("ours_from_failure", "ours_from_artifacts", "dbt_retry")
        },
    }
    progress(
        f"  n={n} {position}: ours executed {paths['ours_from_failure'].executed} of "
        f"{len(needed)}; time ratio "
        f"{ratios(paths['ours_from_failure'].wall_s, floor.wall_s).fmt()}"
    )
    return result


def run(
    work: Path,
    sizes: list[int | str],
    *,
    repeats: int,
    secondary_repeats: int = 1,
    untagged_max_n: int = 100,
    positions: tuple[str, ...] = POSITIONS,
) -> dict[str, Any]:
    """Figures 1 and 2 for every size; one isolated environment per size."""
    by_size: dict[str, Any] = {}
    for size in sizes:
        env, graph, n = built_env(work, size, "recovery")
        by_size[str(size)] = {
            position: measure_position(
                env,
                graph,
                position,
                repeats=repeats,
                secondary_repeats=min(secondary_repeats, repeats),
                untagged=n <= untagged_max_n,
            )
            for position in positions
        }
    return {
        "target_time_ratio": TARGET_TIME_RATIO,
        "repeats": repeats,
        "secondary_repeats": min(secondary_repeats, repeats),
        "sizes": by_size,
    }
