"""The retry planner on small hand-built graphs: one scenario per test.

The graph is the dbt DAG from the "threads, errors and failing fast" write-up
(alpha → beta_a/beta_b → gamma_a/gamma_b), with an ingestion asset above it and a Python
report below it, so dbt and non-dbt assets meet in one plan:

    raw/events → model_alpha → model_beta_a → model_gamma_a ┐
                             → model_beta_b → model_gamma_b ┴→ reports/daily
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from orchestration.artifacts.run_results import NodeResult, RunResults
from orchestration.errors import PlanError
from orchestration.recovery import (
    AssetGraph,
    AssetState,
    CarriedOver,
    CheckOutcome,
    CheckRef,
    CheckStatus,
    DbtNodeIndex,
    PlannedAsset,
    Reason,
    RetryPlan,
    RunOutcome,
    RunStatus,
    UnknownNode,
    plan_from_asset_states,
    plan_from_run_results,
    plan_run_chain,
)

ALPHA, BETA_A, BETA_B = "model_alpha", "model_beta_a", "model_beta_b"
GAMMA_A, GAMMA_B = "model_gamma_a", "model_gamma_b"
RAW, REPORT = "raw/events", "reports/daily"
MODELS = (ALPHA, BETA_A, BETA_B, GAMMA_A, GAMMA_B)
ALL = frozenset({RAW, *MODELS, REPORT})

GRAPH = AssetGraph.from_parents(
    {
        RAW: [],
        ALPHA: [RAW],
        BETA_A: [ALPHA],
        BETA_B: [ALPHA],
        GAMMA_A: [BETA_A],
        GAMMA_B: [BETA_B],
        REPORT: [GAMMA_A, GAMMA_B],
    }
)

NOT_NULL_BETA_A = "test.jaffle.not_null_model_beta_a_id.1a2b3c"
UNIQUE_BETA_A = "test.jaffle.unique_model_beta_a_id.4d5e6f"
ACCEPTED_VALUES_BETA_B = "test.jaffle.accepted_values_model_beta_b_kind.7a8b9c"  # warn severity
INDEX = DbtNodeIndex(
    asset_by_unique_id={f"model.jaffle.{model}": model for model in MODELS},
    test_to_check={
        NOT_NULL_BETA_A: CheckRef(BETA_A, "not_null_model_beta_a_id", blocking=True),
        UNIQUE_BETA_A: CheckRef(BETA_A, "unique_model_beta_a_id", blocking=True),
        ACCEPTED_VALUES_BETA_B: CheckRef(BETA_B, "accepted_values_kind", blocking=False),
    },
)


def dbt(**statuses: str | tuple[str, str]) -> RunResults:
    """run_results for models named by short name: ``dbt(beta_a=("error", "msg"), ...)``."""
    results = []
    for name, value in statuses.items():
        status, message = value if isinstance(value, tuple) else (value, None)
        unique_id = name if "." in name else f"model.jaffle.model_{name}"
        results.append(NodeResult(unique_id, unique_id.split(".")[0], status, message))
    return RunResults(
        invocation_id="inv",
        dbt_version="1.11.2",
        generated_at="2025-06-02T03:14:07Z",
        command="build",
        args={"which": "build", "fail_fast": False},
        elapsed_time_s=1.0,
        results=tuple(results),
    )


def run(
    run_id: str,
    *,
    materialized: set[str],
    planned: frozenset[str] = ALL,
    status: RunStatus = RunStatus.FAILURE,
    checks: tuple[CheckOutcome, ...] = (),
    dbt_results: RunResults | None = None,
    failed_steps: set[str] | None = None,
) -> RunOutcome:
    return RunOutcome(
        run_id=run_id,
        status=status,
        planned=planned,
        materialized=frozenset(materialized),
        checks=checks,
        dbt_results=dbt_results,
        failed_steps_assets=frozenset(failed_steps or ()),
    )


def by_key(plan: RetryPlan) -> dict[str, PlannedAsset]:
    return {asset.key: asset for asset in plan.assets}


def test_an_errored_model_reruns_with_its_downstream_and_the_rest_is_carried_over() -> None:
    message = "Runtime Error in model model_beta_a (models/model_beta_a.sql)\n  division by zero"
    root = run(
        "r1",
        materialized={RAW, ALPHA, BETA_B, GAMMA_B},
        dbt_results=dbt(
            alpha="success", beta_a=("error", message), beta_b="success", gamma_a="skipped"
        ),
    )

    plan = plan_run_chain(GRAPH, [root], index=INDEX)

    assert [asset.key for asset in plan.assets] == [BETA_A, GAMMA_A, REPORT]
    assets = by_key(plan)
    assert assets[BETA_A] == PlannedAsset(
        BETA_A,
        Reason.ERRORED,
        "Runtime Error in model model_beta_a (models/model_beta_a.sql)",
        (),
        "r1",
    )
    assert assets[GAMMA_A].reason is Reason.UPSTREAM_FAILED
    assert assets[GAMMA_A].caused_by == (BETA_A,)
    assert assets[REPORT].reason is Reason.UPSTREAM_FAILED
    assert assets[REPORT].caused_by == (BETA_A,)
    assert {carried.key for carried in plan.carried_over} == {RAW, ALPHA, BETA_B, GAMMA_B}
    assert plan.summary() == "3 to re-run (1 errored, 2 upstream_failed); 4 carried over"
    assert (plan.root_run_id, plan.parent_run_id) == ("r1", "r1")


def test_a_failed_blocking_check_reruns_its_model_and_downstream() -> None:
    root = run(
        "r1",
        materialized={RAW, ALPHA, BETA_A, BETA_B, GAMMA_B},
        checks=(
            CheckOutcome(BETA_A, "not_null_model_beta_a_id", True, CheckStatus.FAILED),
            CheckOutcome(BETA_A, "unique_model_beta_a_id", True, CheckStatus.PASSED),
        ),
    )

    plan = plan_run_chain(GRAPH, [root])

    assets = by_key(plan)
    assert plan.keys == {BETA_A, GAMMA_A, REPORT}
    assert assets[BETA_A].reason is Reason.CHECK_FAILED
    assert "not_null_model_beta_a_id" in assets[BETA_A].detail
    assert "unique_model_beta_a_id" not in assets[BETA_A].detail
    assert assets[GAMMA_A].caused_by == (BETA_A,)


def test_a_blocking_test_that_errored_counts_as_a_failed_check() -> None:
    root = run(
        "r1",
        materialized=ALL - {GAMMA_A, REPORT},
        checks=(CheckOutcome(BETA_A, "unique_model_beta_a_id", True, CheckStatus.ERRORED),),
    )

    plan = plan_run_chain(GRAPH, [root])

    assert by_key(plan)[BETA_A].reason is Reason.CHECK_FAILED
    assert "errored" in by_key(plan)[BETA_A].detail


def test_warn_tests_are_never_a_reason() -> None:
    # Regression: a warn-severity failure must not rebuild the model, neither from the event
    # log nor from run_results (where dbt writes "warn", or "fail"/"error" for odd configs).
    root = run(
        "r1",
        materialized=ALL,
        status=RunStatus.SUCCESS,
        checks=(CheckOutcome(BETA_B, "accepted_values_kind", False, CheckStatus.FAILED),),
        dbt_results=dbt(**{ACCEPTED_VALUES_BETA_B: ("error", "Database Error in test")}),
    )

    assert plan_run_chain(GRAPH, [root], index=INDEX).is_empty
    from_artifacts = plan_from_run_results(
        INDEX,
        GRAPH,
        dbt(alpha="success", beta_b="success", **{ACCEPTED_VALUES_BETA_B: "fail"}),
        run_id="r1",
    )
    assert from_artifacts.is_empty


def test_a_warn_result_on_an_error_severity_test_is_not_a_reason() -> None:
    # dbt writes "warn" when a severity:error test crosses warn_if but not error_if.
    results = dbt(alpha="success", beta_a="success", **{NOT_NULL_BETA_A: "warn"})

    assert plan_from_run_results(INDEX, GRAPH, results, run_id="r1").is_empty


def test_the_event_logs_check_evaluations_win_over_run_results() -> None:
    # run_results only fills in checks the event log has nothing about.
    root = run(
        "r1",
        materialized=ALL,
        checks=(CheckOutcome(BETA_A, "not_null_model_beta_a_id", True, CheckStatus.PASSED),),
        dbt_results=dbt(**{NOT_NULL_BETA_A: "fail", UNIQUE_BETA_A: "error"}),
    )

    plan = plan_run_chain(GRAPH, [root], index=INDEX)

    assert by_key(plan)[BETA_A].detail == "blocking check unique_model_beta_a_id (errored)"


def test_a_blocking_check_that_never_ran_on_a_materialized_model_reruns_it() -> None:
    root = run(
        "r1",
        status=RunStatus.CANCELED,
        materialized={RAW, ALPHA, BETA_A, BETA_B, GAMMA_B},
        checks=(CheckOutcome(BETA_A, "not_null_model_beta_a_id", True, CheckStatus.NOT_EXECUTED),),
    )

    plan = plan_run_chain(GRAPH, [root])

    assets = by_key(plan)
    assert assets[BETA_A].reason is Reason.CHECK_NOT_EXECUTED
    # The check not running is not a failure: what is below was simply not reached.
    assert assets[GAMMA_A].reason is Reason.NOT_REACHED
    assert "canceled" in assets[GAMMA_A].detail


def test_fail_fast_cut_offs_include_a_started_and_cancelled_node() -> None:
    # dbt build --fail-fast --threads 2: beta_a errors while beta_b is running; dbt cancels
    # beta_b and writes it, like everything not yet finished, as "Skipping due to fail_fast".
    cut_off = ("skipped", "Skipping due to fail_fast")
    root = run(
        "r1",
        materialized={RAW, ALPHA},
        dbt_results=dbt(
            alpha="success",
            beta_a=("error", "Runtime Error in model model_beta_a"),
            beta_b=cut_off,
            gamma_a=cut_off,
            gamma_b=cut_off,
        ),
    )

    plan = plan_run_chain(GRAPH, [root], index=INDEX)

    assets = by_key(plan)
    assert assets[BETA_A].reason is Reason.ERRORED
    assert assets[BETA_B].reason is Reason.FAIL_FAST
    assert assets[BETA_B].caused_by == (BETA_A,)  # not below beta_a: the failure that stopped dbt
    assert assets[GAMMA_B].reason is Reason.FAIL_FAST
    assert assets[GAMMA_A].reason is Reason.FAIL_FAST
    assert assets[GAMMA_A].caused_by == (BETA_A,)
    assert assets[REPORT].reason is Reason.UPSTREAM_FAILED
    assert plan.keys == ALL - {RAW, ALPHA}


def test_a_killed_run_without_run_results_plans_what_it_never_reached() -> None:
    # The process died mid-build: no run_results, no failed step, only what got materialized.
    root = run("r1", materialized={RAW, ALPHA, BETA_A})

    plan = plan_run_chain(GRAPH, [root], index=INDEX)

    assert plan.keys == {BETA_B, GAMMA_A, GAMMA_B, REPORT}
    assert {asset.reason for asset in plan.assets} == {Reason.NOT_REACHED}
    assert all(asset.caused_by == () for asset in plan.assets)


def test_a_failed_non_dbt_asset_reruns_with_everything_dbt_builds_from_it() -> None:
    root = run("r1", materialized=set(), failed_steps={RAW})

    plan = plan_run_chain(GRAPH, [root])

    assets = by_key(plan)
    assert [asset.key for asset in plan.assets][0] == RAW
    assert assets[RAW].reason is Reason.ERRORED
    assert "step failed in run r1" in assets[RAW].detail
    assert all(assets[key].caused_by == (RAW,) for key in ALL - {RAW})
    assert all(assets[key].reason is Reason.UPSTREAM_FAILED for key in ALL - {RAW})


def test_causes_name_the_nearest_failures_only() -> None:
    root = run(
        "r1",
        materialized={RAW, ALPHA},
        dbt_results=dbt(alpha="success", beta_a="error", beta_b="error"),
    )

    plan = plan_run_chain(GRAPH, [root], index=INDEX)

    assert by_key(plan)[GAMMA_A].caused_by == (BETA_A,)
    assert by_key(plan)[REPORT].caused_by == (BETA_A, BETA_B)


def test_a_second_retry_plans_only_what_is_still_failing() -> None:
    root = run("r1", materialized={RAW, ALPHA}, dbt_results=dbt(beta_a="error", beta_b="error"))
    first_retry = run(
        "r2",
        planned=frozenset({BETA_A, BETA_B, GAMMA_A, GAMMA_B, REPORT}),
        materialized={BETA_A, GAMMA_A},
        dbt_results=dbt(beta_a="success", gamma_a="success", beta_b=("error", "still broken")),
    )

    plan = plan_run_chain(GRAPH, [root, first_retry], index=INDEX)

    assert plan.keys == {BETA_B, GAMMA_B, REPORT}
    assert by_key(plan)[BETA_B].detail == "still broken"
    assert by_key(plan)[BETA_B].run_id == "r2"
    assert (plan.root_run_id, plan.parent_run_id) == ("r1", "r2")
    carried = {carried.key: carried.run_id for carried in plan.carried_over}
    assert carried == {RAW: "r1", ALPHA: "r1", BETA_A: "r2", GAMMA_A: "r2"}


def test_carried_over_assets_name_the_latest_run_they_succeeded_in() -> None:
    # A step-level "from failure" retry rebuilds the whole dbt op, successes included.
    root = run("r1", materialized={RAW, ALPHA}, dbt_results=dbt(beta_a="error"))
    retry = run("r2", planned=ALL - {RAW}, materialized=ALL - {RAW}, status=RunStatus.SUCCESS)

    plan = plan_run_chain(GRAPH, [root, retry], index=INDEX)

    assert plan.is_empty
    assert {carried.key: carried.run_id for carried in plan.carried_over} == {
        RAW: "r1",
        **{key: "r2" for key in ALL - {RAW}},
    }


def test_a_third_retry_takes_each_reason_from_the_latest_run_that_planned_it() -> None:
    root = run("r1", materialized={RAW, ALPHA}, dbt_results=dbt(beta_a="error", beta_b="error"))
    second = run(
        "r2",
        planned=frozenset({BETA_A, GAMMA_A}),  # someone retried one branch by hand
        materialized={BETA_A},
        dbt_results=dbt(beta_a="success", gamma_a=("error", "timeout")),
    )
    third = run(
        "r3",
        planned=frozenset({GAMMA_A}),
        status=RunStatus.CANCELED,
        materialized=set(),
    )

    plan = plan_run_chain(GRAPH, [root, second, third], index=INDEX)

    assets = by_key(plan)
    assert plan.keys == {BETA_B, GAMMA_A, GAMMA_B, REPORT}
    assert (assets[GAMMA_A].reason, assets[GAMMA_A].run_id) == (Reason.NOT_REACHED, "r3")
    assert (assets[BETA_B].reason, assets[BETA_B].run_id) == (Reason.ERRORED, "r1")
    assert (assets[GAMMA_B].reason, assets[GAMMA_B].run_id) == (Reason.UPSTREAM_FAILED, "r1")


def test_the_latest_run_decides_an_all_steps_re_execution_that_broke_a_model() -> None:
    # Issue 11, item 1: r1 built alpha and beta_a, gamma_a errored; r2 re-ran all steps and
    # beta_a errored there. beta_a's latest outcome is r2's error: re-run it, and gamma_a on it.
    root = run(
        "r1",
        materialized={RAW, ALPHA, BETA_A, BETA_B, GAMMA_B},
        dbt_results=dbt(gamma_a="error"),
    )
    all_steps = run(
        "r2",
        materialized={RAW, ALPHA, BETA_B, GAMMA_B},
        dbt_results=dbt(beta_a=("error", "warehouse timeout"), gamma_a="skipped"),
    )

    plan = plan_run_chain(GRAPH, [root, all_steps], index=INDEX)

    assets = by_key(plan)
    assert plan.keys == {BETA_A, GAMMA_A, REPORT}
    assert (assets[BETA_A].reason, assets[BETA_A].detail) == (Reason.ERRORED, "warehouse timeout")
    assert assets[BETA_A].run_id == "r2"
    assert (assets[GAMMA_A].reason, assets[GAMMA_A].caused_by) == (
        Reason.UPSTREAM_FAILED,
        (BETA_A,),
    )
    carried = {carried.key: carried.run_id for carried in plan.carried_over}
    assert carried == {RAW: "r2", ALPHA: "r2", BETA_B: "r2", GAMMA_B: "r2"}


def test_a_later_run_that_failed_an_upstream_re_runs_what_an_earlier_run_built_on_it() -> None:
    # r2 rebuilt only one branch and beta_a errored in it: the report r1 built on the old
    # beta_a lies below a failure within the root's scope, so it is re-run too.
    root = run(
        "r1",
        materialized={RAW, ALPHA, BETA_A, BETA_B, GAMMA_B, REPORT},
        dbt_results=dbt(gamma_a="error"),
    )
    retry = run(
        "r2",
        planned=frozenset({BETA_A, GAMMA_A}),
        materialized=set(),
        dbt_results=dbt(beta_a=("error", "warehouse timeout"), gamma_a="skipped"),
    )

    plan = plan_run_chain(GRAPH, [root, retry], index=INDEX)

    assets = by_key(plan)
    assert [asset.key for asset in plan.assets] == [BETA_A, GAMMA_A, REPORT]
    assert (assets[BETA_A].reason, assets[BETA_A].run_id) == (Reason.ERRORED, "r2")
    assert assets[REPORT] == PlannedAsset(
        REPORT, Reason.DOWNSTREAM, "downstream of failed model_gamma_a", (GAMMA_A,), None
    )
    assert {carried.key for carried in plan.carried_over} == {RAW, ALPHA, BETA_B, GAMMA_B}


def test_a_step_that_succeeded_on_a_still_failed_upstream_is_re_run() -> None:
    # Someone re-executed gamma_a's step alone: it "succeeded" on the beta_a that r1 failed to
    # build, whose latest outcome is still r1's error.
    root = run("r1", materialized={RAW, ALPHA, BETA_B, GAMMA_B}, dbt_results=dbt(beta_a="error"))
    step = run(
        "r2",
        planned=frozenset({GAMMA_A}),
        status=RunStatus.SUCCESS,
        materialized={GAMMA_A},
        dbt_results=dbt(gamma_a="success"),
    )

    plan = plan_run_chain(GRAPH, [root, step], index=INDEX)

    assets = by_key(plan)
    assert plan.keys == {BETA_A, GAMMA_A, REPORT}
    assert (assets[BETA_A].reason, assets[BETA_A].run_id) == (Reason.ERRORED, "r1")
    assert (assets[GAMMA_A].reason, assets[GAMMA_A].caused_by) == (Reason.DOWNSTREAM, (BETA_A,))
    assert (assets[REPORT].reason, assets[REPORT].run_id) == (Reason.UPSTREAM_FAILED, "r1")


def test_a_from_failure_run_leaves_what_it_carried_over_to_the_runs_that_decided_it() -> None:
    # r2 (All steps) broke beta_a; r3, the UI's From failure, selected every asset of the dbt
    # step but ran only the plan {beta_a, gamma_a, report} and was killed before beta_a built.
    root = run("r1", materialized=ALL - {GAMMA_A, REPORT}, dbt_results=dbt(gamma_a="error"))
    all_steps = run(
        "r2",
        materialized=ALL - {BETA_A, GAMMA_A, REPORT},
        dbt_results=dbt(beta_a="error", gamma_a="skipped"),
    )
    from_failure = replace(
        run("r3", materialized=set(), status=RunStatus.CANCELED), resumes_chain=True
    )

    plan = plan_run_chain(GRAPH, [root, all_steps, from_failure], index=INDEX)

    assets = by_key(plan)
    assert plan.keys == {BETA_A, GAMMA_A, REPORT}
    assert {assets[key].reason for key in plan.keys} == {Reason.NOT_REACHED}
    assert {assets[key].run_id for key in plan.keys} == {"r3"}
    carried = {carried.key: carried.run_id for carried in plan.carried_over}
    assert carried == {RAW: "r2", ALPHA: "r2", BETA_B: "r2", GAMMA_B: "r2"}


def test_a_retry_that_planned_more_than_the_root_does_not_widen_the_scope() -> None:
    root = run(
        "r1",
        planned=frozenset({BETA_A, GAMMA_A}),
        materialized=set(),
        dbt_results=dbt(beta_a="error", gamma_a="skipped"),
    )
    retry = run("r2", planned=ALL, materialized={RAW, ALPHA, BETA_A}, failed_steps={GAMMA_A})

    plan = plan_run_chain(GRAPH, [root, retry], index=INDEX)

    assert plan.keys == {GAMMA_A}
    assert {carried.key for carried in plan.carried_over} == {BETA_A}


def test_a_successful_chain_plans_nothing() -> None:
    root = run("r1", materialized={RAW, ALPHA}, failed_steps={BETA_A})
    rest = ALL - {RAW, ALPHA}
    retry = run("r2", planned=rest, materialized=rest, status=RunStatus.SUCCESS)

    plan = plan_run_chain(GRAPH, [root, retry])

    assert plan.is_empty
    assert plan.summary() == "nothing to re-run; 7 carried over"


def test_an_in_progress_run_cannot_be_planned() -> None:
    root = run("r1", materialized={RAW})
    retry = run("r2", materialized=set(), status=RunStatus.IN_PROGRESS)

    with pytest.raises(PlanError, match="run r2 has not finished"):
        plan_run_chain(GRAPH, [root, retry])


def test_an_empty_chain_cannot_be_planned() -> None:
    with pytest.raises(PlanError, match="chain is empty"):
        plan_run_chain(GRAPH, [])


def test_assets_that_left_the_graph_since_the_run_are_left_out_with_a_warning() -> None:
    root = run("r1", planned=ALL | {"old_model"}, materialized={RAW}, failed_steps={ALPHA})

    plan = plan_run_chain(GRAPH, [root])

    assert "old_model" not in plan.keys
    assert any(
        "no longer in the asset graph" in line and "old_model" in line for line in plan.warnings
    )


def test_without_an_index_dbt_results_are_not_used_and_the_plan_says_so() -> None:
    root = run("r1", materialized={RAW, ALPHA}, dbt_results=dbt(beta_a="error"))

    plan = plan_run_chain(GRAPH, [root])

    assert plan.keys == ALL - {RAW, ALPHA}
    assert any("no dbt node index" in line for line in plan.warnings)


def test_artifacts_alone_plan_errors_skips_and_failed_blocking_tests() -> None:
    results = dbt(
        alpha="success",
        beta_a="success",
        beta_b=("error", "Database Error in model model_beta_b\n  permission denied"),
        gamma_a="skipped",
        gamma_b="skipped",
        **{NOT_NULL_BETA_A: "fail", UNIQUE_BETA_A: "pass"},
    )

    plan = plan_from_run_results(INDEX, GRAPH, results, run_id="outside-dagster")

    assets = by_key(plan)
    assert plan.keys == {BETA_A, BETA_B, GAMMA_A, GAMMA_B}  # the report was not in this build
    assert assets[BETA_A].reason is Reason.CHECK_FAILED
    assert assets[BETA_B] == PlannedAsset(
        BETA_B,
        Reason.ERRORED,
        "Database Error in model model_beta_b",
        (),
        "outside-dagster",
    )
    assert assets[GAMMA_A].caused_by == (BETA_A,)
    assert assets[GAMMA_B].caused_by == (BETA_B,)
    assert plan.carried_over == (CarriedOver(ALPHA, "outside-dagster"),)


def test_artifacts_of_a_test_only_invocation_rebuild_the_model_whose_blocking_test_failed() -> None:
    # `dbt test` builds nothing, yet a failed error-severity test means rebuild and re-test;
    # `dbt retry` would only re-run the test.
    results = dbt(**{NOT_NULL_BETA_A: "fail", UNIQUE_BETA_A: "pass"})

    plan = plan_from_run_results(INDEX, GRAPH, results, run_id="r1")

    assert plan.keys == {BETA_A}
    assert by_key(plan)[BETA_A].reason is Reason.CHECK_FAILED


def test_unknown_dbt_nodes_are_reported_not_dropped() -> None:
    results = dbt(
        alpha="success",
        beta_a="error",
        **{
            "model.jaffle.model_renamed": "error",
            "test.jaffle.not_null_model_renamed_id.0f0f0f": "skipped",
            "operation.jaffle.jaffle-on-run-end-0": "success",
        },
    )

    plan = plan_from_run_results(INDEX, GRAPH, results, run_id="r1")

    assert set(plan.unknown_nodes) == {
        UnknownNode("model.jaffle.model_renamed", "error"),
        UnknownNode("test.jaffle.not_null_model_renamed_id.0f0f0f", "skipped"),
    }
    assert any("model.jaffle.model_renamed" in line for line in plan.warnings)
    assert plan.summary().endswith("; 2 unknown dbt nodes")
    assert BETA_A in plan.keys


def test_a_failed_unit_test_is_warned_about_since_it_is_not_an_asset() -> None:
    results = dbt(
        alpha="success",
        beta_a="skipped",
        **{"unit_test.jaffle.model_beta_a.test_ids": ("fail", "actual differs from expected")},
    )

    plan = plan_from_run_results(INDEX, GRAPH, results, run_id="r1")

    assert by_key(plan)[BETA_A].reason is Reason.UPSTREAM_FAILED
    assert any("unit_test.jaffle.model_beta_a.test_ids" in line for line in plan.warnings)


def test_the_sensor_plans_failed_assets_and_their_whole_downstream() -> None:
    failed = {
        BETA_A: AssetState(BETA_A, True, Reason.ERRORED, "division by zero", "r7"),
        ALPHA: AssetState(ALPHA, False, Reason.ERRORED, "fixed since", "r6"),
    }

    plan = plan_from_asset_states(GRAPH, failed)

    assert [asset.key for asset in plan.assets] == [BETA_A, GAMMA_A, REPORT]
    assert by_key(plan)[BETA_A] == PlannedAsset(
        BETA_A, Reason.ERRORED, "division by zero", (), "r7"
    )
    assert by_key(plan)[REPORT] == PlannedAsset(
        REPORT, Reason.DOWNSTREAM, f"downstream of failed {BETA_A}", (BETA_A,), None
    )
    assert plan.carried_over == ()


def test_the_sensor_leaves_out_assets_already_being_re_run_and_what_only_they_lead_to() -> None:
    failed = {
        BETA_A: AssetState(BETA_A, True, Reason.ERRORED, "boom", "r7"),
        BETA_B: AssetState(BETA_B, True, Reason.CHECK_FAILED, "not_null failed", "r7"),
    }

    plan = plan_from_asset_states(GRAPH, failed, exclude={BETA_A, GAMMA_B})

    assert plan.keys == {BETA_B, REPORT}
    assert by_key(plan)[REPORT].caused_by == (BETA_B,)


def test_the_sensor_names_the_nearest_failure_when_failures_are_stacked() -> None:
    failed = {
        ALPHA: AssetState(ALPHA, True, Reason.ERRORED, "boom", "r6"),
        BETA_A: AssetState(BETA_A, True, Reason.CHECK_FAILED, "not_null failed", "r7"),
    }

    plan = plan_from_asset_states(GRAPH, failed)

    assert plan.keys == ALL - {RAW}
    assert by_key(plan)[GAMMA_A].caused_by == (BETA_A,)
    assert by_key(plan)[GAMMA_B].caused_by == (ALPHA,)
    assert by_key(plan)[REPORT].caused_by == (ALPHA, BETA_A)


def test_a_plans_json_names_every_asset_with_its_reason_and_the_summary() -> None:
    """What ``plan --run-id ID --json`` prints, as scripts read it."""
    root = run(
        "r1",
        planned=ALL | {"old_model"},
        materialized={RAW, ALPHA},
        checks=(CheckOutcome(ALPHA, "not_null", True, CheckStatus.PASSED),),
        dbt_results=dbt(beta_a="error", beta_b=("skipped", "Skipping due to fail_fast")),
    )
    plan = plan_run_chain(GRAPH, [root], index=INDEX)

    document = json.loads(json.dumps(plan.to_dict()))

    reasons = {asset["key"]: asset["reason"] for asset in document["assets"]}
    assert reasons[BETA_A] == "errored" and reasons[BETA_B] == "fail_fast"
    assert {c["key"] for c in document["carried_over"]} == {RAW, ALPHA}
    assert document["root_run_id"] == "r1" and document["summary"] == plan.summary()
    assert any("old_model" in warning for warning in document["warnings"])


def test_unknown_parents_become_roots_and_the_order_is_parents_first() -> None:
    graph = AssetGraph.from_parents({"b": ["a"], "c": ["b", "source/x"]})

    assert graph.parents["a"] == frozenset()
    assert graph.parents["source/x"] == frozenset()
    assert graph.topological_order(["c", "b", "a", "source/x"]) == ["a", "source/x", "b", "c"]
    assert graph.children["b"] == ("c",)


def test_downstream_walks_through_unselected_assets_the_way_dbt_does() -> None:
    # dbt keeps transitive edges across unselected nodes: with beta_a unselected, gamma_a is
    # still skipped when alpha fails, so it is downstream of alpha "within" the selection.
    within = {ALPHA, GAMMA_A}

    assert GRAPH.downstream([ALPHA], within=within) == {ALPHA, GAMMA_A}
    assert GRAPH.downstream([ALPHA], within=within, include_self=False) == {GAMMA_A}
    assert GRAPH.downstream([BETA_A, GAMMA_A], include_self=False) == {GAMMA_A, REPORT}


def test_a_graph_with_a_cycle_is_refused_with_what_to_fix() -> None:
    with pytest.raises(PlanError, match="lists itself as a parent"):
        AssetGraph.from_parents({"a": ["a"]})
    cyclic = AssetGraph.from_parents({"a": ["c"], "b": ["a"], "c": ["b"]})
    with pytest.raises(PlanError, match="cycle through a, b, c"):
        cyclic.topological_order(["a"])
