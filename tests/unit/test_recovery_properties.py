"""Properties of the planner on random layered DAGs, with failures simulated the way dbt runs.

The simulation is written independently of the planner: dbt runs the selected nodes, a node
whose upstream errored (even through an unselected node: dbt keeps transitive edges when it
selects a subset) is skipped, everything else succeeds. The planner must then re-run exactly
what failed and what lies below it in the selection, never what succeeded, and (for model
errors) exactly the set `dbt retry` would run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.artifacts.run_results import NodeResult, RunResults
from orchestration.recovery import (
    AssetGraph,
    AssetState,
    CheckRef,
    DbtNodeIndex,
    Reason,
    RunOutcome,
    RunStatus,
    plan_from_asset_states,
    plan_from_run_results,
    plan_run_chain,
)

FAIL_FAST_MESSAGE = "Skipping due to fail_fast"


@dataclass(frozen=True)
class Dag:
    """A layered DAG: ``order`` is parents-first by construction."""

    parents: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...]

    @property
    def graph(self) -> AssetGraph:
        return AssetGraph.from_parents(self.parents)

    @property
    def index(self) -> DbtNodeIndex:
        return DbtNodeIndex(
            asset_by_unique_id={unique_id(key): key for key in self.order},
            test_to_check={
                blocking_test(key): CheckRef(key, f"not_null_{key}", blocking=True)
                for key in self.order
            }
            | {warn_test(key): CheckRef(key, f"warn_{key}", blocking=False) for key in self.order},
        )


def unique_id(key: str) -> str:
    return f"model.proj.{key}"


def blocking_test(key: str) -> str:
    return f"test.proj.not_null_{key}.abc"


def warn_test(key: str) -> str:
    return f"test.proj.warn_{key}.def"


def random_dag(seed: int, layers: int, width: int) -> Dag:
    """Built from a seed rather than drawn edge by edge, so thousands of nodes stay cheap."""
    rng = random.Random(seed)
    parents: dict[str, tuple[str, ...]] = {}
    earlier: list[str] = []
    for layer in range(layers):
        current = [f"l{layer}_n{position}" for position in range(rng.randint(1, width))]
        for key in current:
            window = earlier[-3 * width :]  # recent layers, so paths get long
            parents[key] = tuple(rng.sample(window, min(len(window), rng.randint(0, 3))))
        earlier.extend(current)
    return Dag(parents=parents, order=tuple(earlier))


@st.composite
def dags(draw: st.DrawFn, max_layers: int = 7, max_width: int = 6) -> Dag:
    return random_dag(
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(1, max_layers)),
        draw(st.integers(1, max_width)),
    )


@dataclass(frozen=True)
class Scenario:
    dag: Dag
    planned: frozenset[str]
    errors: frozenset[str]
    failed_tests: frozenset[str] = frozenset()
    warned_tests: frozenset[str] = frozenset()


@st.composite
def scenarios(draw: st.DrawFn, with_tests: bool = False, dag_strategy=None) -> Scenario:
    dag = draw(dag_strategy or dags())
    keys = sorted(dag.order)
    everything = st.just(frozenset(keys))  # the common case: a job over the whole graph
    planned = frozenset(draw(st.one_of(everything, st.sets(st.sampled_from(keys), min_size=1))))
    planned_keys = sorted(planned)
    errors = frozenset(draw(st.sets(st.sampled_from(planned_keys), max_size=4)))
    if not with_tests:
        return Scenario(dag, planned, errors)
    failed_tests = frozenset(draw(st.sets(st.sampled_from(planned_keys), max_size=3)))
    warned_tests = frozenset(draw(st.sets(st.sampled_from(planned_keys), max_size=3)))
    return Scenario(dag, planned, errors, failed_tests, warned_tests)


def descendants(parents: Mapping[str, Iterable[str]], starts: Iterable[str]) -> set[str]:
    """Plain BFS over a children map built here, independent of AssetGraph."""
    children: dict[str, list[str]] = {}
    for key, key_parents in parents.items():
        for parent in key_parents:
            children.setdefault(parent, []).append(key)
    seen: set[str] = set()
    frontier = list(starts)
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen


def ancestors(parents: Mapping[str, Iterable[str]], key: str) -> set[str]:
    seen: set[str] = set()
    frontier = [key]
    while frontier:
        for parent in parents[frontier.pop()]:
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return seen


def simulate_dbt_build(scenario: Scenario, *, fail_fast: bool = False) -> dict[str, str]:
    """unique_id → status, the way `dbt build` reports a run over ``scenario.planned``.

    A model "fails" when it errors or when its blocking test fails; a failed node's
    descendants (through unselected nodes too) are skipped. With fail-fast, every node after
    the first failure in execution order is skipped with dbt's fail-fast message, and so is
    one node that had started alongside the failing one.
    """
    dag = scenario.dag
    statuses: dict[str, str] = {}
    tainted: set[str] = set()  # keys whose descendants dbt skips
    failed_at: int | None = None
    for position, key in enumerate(dag.order):
        upstream_failed = any(parent in tainted for parent in dag.parents[key])
        if key not in scenario.planned:
            if upstream_failed:
                tainted.add(key)  # an unselected node passes the skip on (transitive edges)
            continue
        if fail_fast and failed_at is not None:
            statuses[unique_id(key)] = "skipped"
            continue
        if upstream_failed:
            statuses[unique_id(key)] = "skipped"
            tainted.add(key)
        elif key in scenario.errors:
            statuses[unique_id(key)] = "error"
            tainted.add(key)
        else:
            statuses[unique_id(key)] = "success"
            statuses[blocking_test(key)] = "fail" if key in scenario.failed_tests else "pass"
            statuses[warn_test(key)] = "warn" if key in scenario.warned_tests else "pass"
            if key in scenario.failed_tests:
                tainted.add(key)
        if key in tainted and failed_at is None and statuses[unique_id(key)] != "skipped":
            failed_at = position
    if fail_fast and failed_at is not None:
        # The node that had started in parallel with the failure: cancelled, reported skipped.
        needed = ancestors(dag.parents, dag.order[failed_at])
        started = [
            key
            for key in dag.order[:failed_at]
            if statuses.get(unique_id(key)) == "success"
            and key not in scenario.failed_tests
            and key not in needed
        ]
        if started:
            statuses[unique_id(started[-1])] = "skipped"
            del statuses[blocking_test(started[-1])], statuses[warn_test(started[-1])]
    return statuses


def run_results(statuses: Mapping[str, str], *, fail_fast: bool = False) -> RunResults:
    return RunResults(
        invocation_id="inv",
        dbt_version="1.11.2",
        generated_at="2025-06-02T00:00:00Z",
        command="build",
        args={"which": "build", "fail_fast": fail_fast},
        elapsed_time_s=1.0,
        results=tuple(
            NodeResult(
                uid,
                uid.split(".")[0],
                status,
                FAIL_FAST_MESSAGE if fail_fast and status == "skipped" else None,
            )
            for uid, status in statuses.items()
        ),
    )


def models_with(statuses: Mapping[str, str], wanted: set[str]) -> set[str]:
    return {
        uid.removeprefix("model.proj.")
        for uid, status in statuses.items()
        if uid.startswith("model.") and status in wanted
    }


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_model_errors_plan_exactly_what_dbt_retry_would_run(scenario: Scenario) -> None:
    statuses = simulate_dbt_build(scenario)
    dbt_retry = models_with(statuses, {"error", "skipped"})  # computed from statuses alone
    succeeded = models_with(statuses, {"success"})

    plan = plan_from_run_results(
        scenario.dag.index, scenario.dag.graph, run_results(statuses), run_id="r1"
    )

    assert plan.keys == dbt_retry
    errored = models_with(statuses, {"error"})
    assert plan.keys == errored | (descendants(scenario.dag.parents, errored) & scenario.planned)
    assert not plan.keys & succeeded
    assert {carried.key for carried in plan.carried_over} == succeeded
    for asset in plan.assets:
        if asset.key in errored:
            assert asset.reason is Reason.ERRORED
        else:
            assert asset.reason is Reason.UPSTREAM_FAILED
            assert asset.caused_by and set(asset.caused_by) <= errored


@settings(max_examples=300, deadline=None)
@given(scenarios(with_tests=True))
def test_failed_blocking_tests_add_their_models_and_warn_tests_add_nothing(
    scenario: Scenario,
) -> None:
    statuses = simulate_dbt_build(scenario)
    errored = models_with(statuses, {"error"})
    check_failed = {
        key for key in scenario.failed_tests if statuses.get(blocking_test(key)) == "fail"
    }
    failed = errored | check_failed
    succeeded = models_with(statuses, {"success"}) - check_failed

    plan = plan_from_run_results(
        scenario.dag.index, scenario.dag.graph, run_results(statuses), run_id="r1"
    )

    assert plan.keys == failed | (descendants(scenario.dag.parents, failed) & scenario.planned)
    assert not plan.keys & succeeded
    assert {a.key for a in plan.assets if a.reason is Reason.CHECK_FAILED} == check_failed
    # A superset of dbt retry, which re-runs the failed test but not its model.
    assert models_with(statuses, {"error", "skipped"}) <= plan.keys


@settings(max_examples=200, deadline=None)
@given(scenarios(with_tests=True))
def test_fail_fast_cut_offs_are_all_re_run_and_nothing_that_finished_is(
    scenario: Scenario,
) -> None:
    statuses = simulate_dbt_build(scenario, fail_fast=True)
    results = run_results(statuses, fail_fast=True)
    succeeded = models_with(statuses, {"success"}) - scenario.failed_tests
    cut_off = {
        r.unique_id.removeprefix("model.proj.")
        for r in results.results
        if r.resource_type == "model" and r.cut_off_by_fail_fast
    }

    plan = plan_from_run_results(scenario.dag.index, scenario.dag.graph, results, run_id="r1")

    assert plan.keys == scenario.planned - succeeded
    assert {a.key for a in plan.assets if a.reason is Reason.FAIL_FAST} == cut_off


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.integers(0, 2**32 - 1))
def test_a_partly_successful_retry_plans_a_subset_of_the_first_plan(
    scenario: Scenario, seed: int
) -> None:
    dag, index, graph = scenario.dag, scenario.dag.index, scenario.dag.graph
    first_statuses = simulate_dbt_build(scenario)
    root = RunOutcome(
        run_id="r1",
        status=RunStatus.FAILURE if scenario.errors else RunStatus.SUCCESS,
        planned=scenario.planned,
        materialized=frozenset(models_with(first_statuses, {"success"})),
        dbt_results=run_results(first_statuses),
    )
    first = plan_run_chain(graph, [root], index=index)
    assert (
        first.keys
        == plan_from_run_results(index, graph, run_results(first_statuses), run_id="r1").keys
    )

    rng = random.Random(seed)
    still_broken = frozenset(key for key in sorted(first.keys) if rng.random() < 0.3)
    retry_scenario = Scenario(dag, first.keys, still_broken)
    retry_statuses = simulate_dbt_build(retry_scenario)
    retry = RunOutcome(
        run_id="r2",
        status=RunStatus.FAILURE if still_broken else RunStatus.SUCCESS,
        planned=first.keys,
        materialized=frozenset(models_with(retry_statuses, {"success"})),
        dbt_results=run_results(retry_statuses),
    )

    second = plan_run_chain(graph, [root, retry], index=index)

    assert second.keys <= first.keys
    assert second.keys == first.keys - retry.materialized
    assert second.keys | {c.key for c in second.carried_over} == scenario.planned
    assert all(asset.run_id == "r2" for asset in second.assets)


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_the_sensor_plans_failures_and_their_whole_downstream_minus_what_is_running(
    dag: Dag, data: st.DataObject
) -> None:
    keys = sorted(dag.order)
    failed = data.draw(st.sets(st.sampled_from(keys), max_size=5))
    running = data.draw(st.sets(st.sampled_from(keys), max_size=3))
    states = {key: AssetState(key, True, Reason.ERRORED, "boom", "r1") for key in failed}

    plan = plan_from_asset_states(dag.graph, states, exclude=running)

    seeds = set(failed) - running
    assert plan.keys == (seeds | descendants(dag.parents, seeds)) - running
    for asset in plan.assets:
        if asset.key not in seeds:
            assert asset.reason is Reason.DOWNSTREAM
            assert asset.caused_by and set(asset.caused_by) <= seeds
    order = [asset.key for asset in plan.assets]
    position = {key: index for index, key in enumerate(order)}
    for key in order:
        planned_parents = [parent for parent in dag.parents[key] if parent in position]
        assert all(position[parent] < position[key] for parent in planned_parents)


@st.composite
def large_scenarios(draw: st.DrawFn) -> Scenario:
    seed = draw(st.integers(0, 2**32 - 1))
    dag = random_dag(seed, layers=40, width=120)
    rng = random.Random(seed)
    planned = frozenset(key for key in dag.order if rng.random() < 0.9)
    errors = frozenset(rng.sample(sorted(planned), min(10, len(planned))))
    return Scenario(dag, planned, errors)


@settings(max_examples=10, deadline=None)
@given(large_scenarios())
def test_large_graphs_follow_the_same_rule(scenario: Scenario) -> None:
    # Layered DAGs of a few thousand nodes: the rule must not change with size.
    assert len(scenario.dag.order) > 1_000
    statuses = simulate_dbt_build(scenario)
    errored = models_with(statuses, {"error"})

    plan = plan_from_run_results(
        scenario.dag.index, scenario.dag.graph, run_results(statuses), run_id="r1"
    )

    assert plan.keys == models_with(statuses, {"error", "skipped"})
    assert plan.keys == errored | (descendants(scenario.dag.parents, errored) & scenario.planned)
