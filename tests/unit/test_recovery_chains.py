"""The latest run decides: ``plan_run_chain`` over random chains of re-executions and retries.

A chain starts with a root run and continues with runs that each plan a different subset, the
way people and the sensor re-execute: *From failure* (Dagster selects the whole dbt step, our
op runs what is still to do and carries the rest over), *From asset failure*
(what the parent run left unmaterialized or with a failed blocking check), *All steps* (the
parent's whole selection), a re-execution of some selected steps, and a sensor retry (failures
plus their whole downstream in the asset graph, wider than the root's scope). Each run is
simulated the way dbt runs a selection; a run may also be cut off part-way (killed worker).

The oracle is written here, from the simulation alone: for every asset in the root's scope, the
latest run of the chain that planned it decides — done only if it materialized it there with its
blocking checks passing — and everything below an asset not done, within the scope, is re-run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.recovery import (
    CheckOutcome,
    CheckStatus,
    Reason,
    RunOutcome,
    RunStatus,
    plan_run_chain,
)
from tests.unit.test_recovery_properties import Dag, dags, descendants


class Kind(StrEnum):
    """How a run of the chain chose what to plan."""

    ROOT = "root"
    FROM_FAILURE = "from_failure"
    FROM_ASSET_FAILURE = "from_asset_failure"
    ALL_STEPS = "all_steps"
    SELECTED_STEPS = "selected_steps"
    SENSOR_RETRY = "sensor_retry"


class Result(StrEnum):
    """What one planned asset ended as in one simulated run."""

    SUCCESS = "success"
    ERROR = "error"
    CHECK_FAILED = "check_failed"
    CHECK_NOT_RUN = "check_not_run"  # built, then the worker died before its tests ran
    SKIPPED = "skipped"  # an upstream failed in this run
    NOT_REACHED = "not_reached"  # the run was killed first


MATERIALIZED = frozenset({Result.SUCCESS, Result.CHECK_FAILED, Result.CHECK_NOT_RUN})


@dataclass(frozen=True)
class SimulatedRun:
    run_id: str
    kind: Kind
    results: Mapping[str, Result]
    """One entry per asset the run ran."""
    warned: frozenset[str]
    """Assets whose warn-severity (non-blocking) check failed: never a reason."""
    selected: frozenset[str] = frozenset()
    """What Dagster planned, when wider than what ran: a *From failure* re-execution selects
    every asset of the dbt step and our op runs only the plan, carrying the rest over."""


def simulate(
    dag: Dag, planned: frozenset[str], rng: random.Random, run_id: str, kind: Kind
) -> SimulatedRun:
    """Run ``planned`` the way dbt does: errors and failed tests hold back everything below
    them (through unselected assets too); a killed run stops at one asset it had just built."""
    errors = {key for key in planned if rng.random() < 0.2}
    failed_tests = {key for key in planned - errors if rng.random() < 0.1}
    ordered = [key for key in dag.order if key in planned]
    killed_at = rng.randrange(len(ordered)) if ordered and rng.random() < 0.15 else None
    results: dict[str, Result] = {}
    tainted: set[str] = set()
    for key in dag.order:
        upstream_failed = any(parent in tainted for parent in dag.parents[key])
        if key not in planned:
            if upstream_failed:
                tainted.add(key)
            continue
        position = ordered.index(key)
        if killed_at is not None and position > killed_at:
            results[key] = Result.NOT_REACHED
        elif upstream_failed:
            results[key] = Result.SKIPPED
        elif key in errors:
            results[key] = Result.ERROR
        elif key in failed_tests:
            results[key] = Result.CHECK_FAILED
        elif position == killed_at:
            results[key] = Result.CHECK_NOT_RUN
        else:
            results[key] = Result.SUCCESS
        if results[key] is not Result.SUCCESS:
            tainted.add(key)
    warned = frozenset(key for key, result in results.items() if rng.random() < 0.2)
    return SimulatedRun(run_id, kind, results, warned, frozenset(planned))


def to_outcome(run: SimulatedRun) -> RunOutcome:
    """What the event log would say: materializations, blocking and warn check evaluations."""
    checks: list[CheckOutcome] = []
    for key, result in sorted(run.results.items()):
        status = {
            Result.SUCCESS: CheckStatus.PASSED,
            Result.CHECK_FAILED: CheckStatus.FAILED,
        }.get(result, CheckStatus.NOT_EXECUTED)
        checks.append(CheckOutcome(key, f"not_null_{key}", True, status))
        if result in MATERIALIZED:
            warn = CheckStatus.FAILED if key in run.warned else CheckStatus.PASSED
            checks.append(CheckOutcome(key, f"warn_{key}", False, warn))
    broken = any(result is not Result.SUCCESS for result in run.results.values())
    killed = any(result is Result.NOT_REACHED for result in run.results.values())
    status = RunStatus.CANCELED if killed else RunStatus.FAILURE if broken else RunStatus.SUCCESS
    return RunOutcome(
        run_id=run.run_id,
        status=status,
        planned=run.selected | frozenset(run.results),
        materialized=frozenset(k for k, r in run.results.items() if r in MATERIALIZED),
        checks=tuple(checks),
        resumes_chain=run.kind is Kind.FROM_FAILURE,
    )


@dataclass(frozen=True)
class Expected:
    not_done: dict[str, str]
    """Asset → the latest run that planned it and did not finish it."""
    downstream: set[str]
    """Assets finished by their latest run, but below an asset not done (within the scope)."""
    carried_over: dict[str, str]
    """Asset → the latest run that planned and finished it."""

    @property
    def keys(self) -> set[str]:
        return set(self.not_done) | self.downstream


def oracle(dag: Dag, chain: Sequence[SimulatedRun]) -> Expected:
    """The rule, from the simulation: the latest planned outcome per asset, plus downstream."""
    scope = set(chain[0].results)
    latest: dict[str, SimulatedRun] = {}
    for run in chain:
        for key in run.results:
            if key in scope:
                latest[key] = run
    not_done = {
        key: run.run_id for key, run in latest.items() if run.results[key] is not Result.SUCCESS
    }
    below = (descendants(dag.parents, not_done) & scope) - set(not_done)
    carried = {
        key: run.run_id for key, run in latest.items() if key not in not_done and key not in below
    }
    return Expected(not_done, below, carried)


def next_planned(
    dag: Dag, chain: Sequence[SimulatedRun], kind: Kind, rng: random.Random
) -> frozenset[str]:
    """What a run of ``kind`` started from the chain's latest run would select."""
    parent = chain[-1]
    if kind is Kind.FROM_FAILURE:
        return frozenset(oracle(dag, chain).keys)
    if kind is Kind.FROM_ASSET_FAILURE:
        return frozenset(k for k, r in parent.results.items() if r is not Result.SUCCESS)
    if kind is Kind.ALL_STEPS:
        return frozenset(parent.results)
    if kind is Kind.SELECTED_STEPS:
        return frozenset(key for key in parent.results if rng.random() < 0.4)
    failed = oracle(dag, chain).not_done  # SENSOR_RETRY: the whole downstream in the graph
    return frozenset(failed) | frozenset(descendants(dag.parents, failed))


@st.composite
def chains(draw: st.DrawFn) -> tuple[Dag, list[SimulatedRun]]:
    dag = draw(dags())
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    keys = sorted(dag.order)
    planned = draw(st.one_of(st.just(frozenset(keys)), st.frozensets(st.sampled_from(keys))))
    chain = [simulate(dag, frozenset(planned) or frozenset(keys), rng, "r1", Kind.ROOT)]
    later = [kind for kind in Kind if kind is not Kind.ROOT]
    for kind in draw(st.lists(st.sampled_from(later), max_size=5)):
        selection = next_planned(dag, chain, kind, rng)
        if not selection:  # nothing to select: the UI offers no such re-execution
            continue
        simulated = simulate(dag, selection, rng, f"r{len(chain) + 1}", kind)
        if kind is Kind.FROM_FAILURE:  # Dagster planned the whole step, the op ran the plan
            simulated = replace(simulated, selected=frozenset(chain[0].results))
        chain.append(simulated)
    return dag, chain


@settings(max_examples=400, deadline=None)
@given(chains())
def test_the_latest_run_that_planned_an_asset_decides_whether_it_is_re_run(
    case: tuple[Dag, list[SimulatedRun]],
) -> None:
    dag, chain = case
    expected = oracle(dag, chain)

    plan = plan_run_chain(dag.graph, [to_outcome(run) for run in chain])

    assert plan.keys == expected.keys, [run.kind.value for run in chain]
    assert {c.key: c.run_id for c in plan.carried_over} == expected.carried_over
    for asset in plan.assets:
        if asset.key in expected.not_done:
            assert asset.run_id == expected.not_done[asset.key]
            assert asset.reason is not Reason.DOWNSTREAM
        else:
            assert (asset.reason, asset.run_id) == (Reason.DOWNSTREAM, None)
            assert asset.caused_by and set(asset.caused_by) <= set(expected.not_done)
    position = {asset.key: n for n, asset in enumerate(plan.assets)}
    for key, n in position.items():
        assert all(position[p] < n for p in dag.parents[key] if p in position)
    assert (plan.root_run_id, plan.parent_run_id) == (chain[0].run_id, chain[-1].run_id)
