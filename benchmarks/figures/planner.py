"""Figure 6: the pure planner on a 10,000-node graph with 10 failures.

The graph is the generator's (same shape as the synthetic dbt projects); the failed run planned
every asset, 10 models errored (spread over the layers, drawn by seed), their downstream was
skipped, everything else succeeded — given to ``plan_run_chain`` both as Dagster's record
(planned / materialized) and as the run's dbt ``run_results`` with a node index, which is the
most work the planner does. Timed warm (the graph's children and topological rank already
cached, as within one op or tick) and cold (``AssetGraph.from_parents`` included, as when a
plan is made from scratch), plus ``plan_from_asset_states``, the sensor's entry point.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from benchmarks.generate import SyntheticGraph, generate_graph
from benchmarks.timing import Stats, progress
from orchestration.artifacts.run_results import RunResults
from orchestration.recovery import (
    AssetGraph,
    AssetState,
    CheckRef,
    DbtNodeIndex,
    Reason,
    RunOutcome,
    RunStatus,
    plan_from_asset_states,
    plan_run_chain,
)

TARGET_MS = 20.0
FAILURES = 10
PROJECT = "synthetic"


def failed_run(graph: SyntheticGraph, failures: set[str]) -> tuple[RunOutcome, DbtNodeIndex]:
    """The failed run as the op's adapters would hand it to the planner."""
    needed = graph.downstream(failures)
    results: list[dict[str, Any]] = []
    tests: dict[str, CheckRef] = {}
    for name in graph.models:
        status = "error" if name in failures else "skipped" if name in needed else "success"
        message = "connection reset by peer" if status == "error" else None
        results.append(
            {"unique_id": f"model.{PROJECT}.{name}", "status": status, "message": message}
        )
        for test in graph.tests.get(name, ()):
            unique_id = f"test.{PROJECT}.{test}_{name}_id.0"
            tests[unique_id] = CheckRef(asset=name, check_name=f"{test}_{name}_id", blocking=True)
            test_status = "skipped" if name in needed else "pass"
            results.append({"unique_id": unique_id, "status": test_status, "message": None})
    run_results = RunResults.from_dict(
        {
            "metadata": {
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                "invocation_id": "bench",
            },
            "results": results,
            "args": {"which": "build"},
        }
    )
    index = DbtNodeIndex(
        asset_by_unique_id={f"model.{PROJECT}.{name}": name for name in graph.models},
        test_to_check=tests,
    )
    outcome = RunOutcome(
        run_id="failed-run",
        status=RunStatus.FAILURE,
        planned=frozenset(graph.models),
        materialized=frozenset(set(graph.models) - needed),
        dbt_results=run_results,
    )
    return outcome, index


def time_ms(action: Callable[[], object], repeats: int) -> Stats:
    values = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        values.append((time.perf_counter() - started) * 1000)
    return Stats.of(values)


def run(n: int = 10_000, *, repeats: int = 50, seed: int = 0) -> dict[str, Any]:
    graph = generate_graph(n, seed)
    rng = random.Random(seed)
    failures = set(rng.sample(graph.models[len(graph.layers[0]) // 2 :], FAILURES))
    needed = graph.downstream(failures)
    outcome, index = failed_run(graph, failures)
    warm_graph = AssetGraph.from_parents(graph.parents)
    plan = plan_run_chain(warm_graph, [outcome], index=index)
    if plan.keys != needed:
        raise RuntimeError("the planner's set differs from failed ∪ downstream")
    states = {
        key: AssetState(key, True, Reason.ERRORED, "connection reset by peer", "failed-run")
        for key in failures
    }
    progress(f"planner: {n} nodes, {FAILURES} failures, {len(needed)} to re-run; timing…")
    warm = time_ms(lambda: plan_run_chain(warm_graph, [outcome], index=index), repeats)
    cold = time_ms(
        lambda: plan_run_chain(AssetGraph.from_parents(graph.parents), [outcome], index=index),
        repeats,
    )
    sensor = time_ms(lambda: plan_from_asset_states(warm_graph, states), repeats)
    progress(f"planner: warm {warm.fmt('.1f', ' ms')}, cold {cold.fmt('.1f', ' ms')}")
    return {
        "target_ms": TARGET_MS,
        "nodes": n,
        "failures": FAILURES,
        "to_rerun": len(needed),
        "repeats": repeats,
        "plan_run_chain_warm_ms": warm.to_dict(3),
        "plan_run_chain_cold_ms": cold.to_dict(3),
        "plan_from_asset_states_ms": sensor.to_dict(3),
    }
