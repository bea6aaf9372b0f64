"""When dbt Cloud's rerun (restart from failure, i.e. dbt retry) runs exactly the plan.

Statuses are written by hand the way dbt records them: a model that errored, the models it
skipped, the tests of both."""

from __future__ import annotations

from orchestration.recovery.rerun import rerun_decision

FAILED = "model.p.failed"
CHILD = "model.p.child"
OTHER = "model.p.other"
STATUSES = {
    "model.p.parent": "success",
    "test.p.not_null_parent": "pass",
    FAILED: "error",
    "test.p.not_null_failed": "skipped",
    CHILD: "skipped",
    "test.p.unique_child": "skipped",
    OTHER: "success",
}
PARENTS = {
    "test.p.not_null_parent": {"model.p.parent"},
    "test.p.not_null_failed": {FAILED},
    "test.p.unique_child": {CHILD},
    "test.p.unique_other": {OTHER},
}


def decide(**changes: object) -> tuple[bool, str]:
    arguments: dict = {
        "planned": {FAILED, CHILD},
        "statuses": STATUSES,
        "test_parents": PARENTS,
        "cloud_status": "error",
        "is_latest_run_of_job": True,
        "same_flags": True,
    } | changes
    decision = rerun_decision(**arguments)
    return decision.use_rerun, decision.reason


def test_an_errored_model_and_what_it_skipped_is_exactly_what_a_rerun_runs() -> None:
    assert decide()[0] is True


def test_a_failed_test_on_a_model_that_succeeded_is_not_rerun_because_retry_skips_the_model() -> (
    None
):
    statuses = {**STATUSES, "test.p.unique_other": "fail"}
    use, reason = decide(statuses=statuses, planned={FAILED, CHILD, OTHER})
    assert use is False and "test.p.unique_other" in reason


def test_a_plan_wider_than_the_failed_run_is_triggered_instead() -> None:
    use, reason = decide(planned={FAILED, CHILD, "model.p.downstream_elsewhere"})
    assert use is False and "model.p.downstream_elsewhere" in reason


def test_a_cancelled_run_an_older_run_or_changed_flags_are_never_rerun() -> None:
    assert decide(cloud_status="cancelled")[0] is False
    assert decide(is_latest_run_of_job=False)[0] is False
    assert decide(same_flags=False)[0] is False
    assert decide(planned=None)[0] is False  # the whole project: a plain run
