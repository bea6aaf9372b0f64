"""Whether dbt Cloud's *rerun* (restart from the point of failure) runs exactly the plan.

dbt Cloud's rerun endpoint restarts the job's **latest** run the way ``dbt retry`` does: it
re-runs the nodes whose result was ``error``, ``fail``, ``runtime error`` or ``skipped``, with
the failed run's own flags (``--vars``, ``--full-refresh``, ``--fail-fast``). That is our rule
only in one case — a model errored and what it skipped is downstream of it. Where a test
failed on a model that succeeded, ``dbt retry`` re-runs the test alone while the rule rebuilds
the model (dbt-core#10164), so the plan's nodes are triggered instead. The decision is made
here, over plain data, so that it is the same wherever a recovery starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

RETRIED_STATUSES = frozenset({"error", "fail", "runtime error", "skipped"})
"""The results ``dbt retry`` re-runs (dbt-core's ``retry`` task)."""


@dataclass(frozen=True)
class RerunDecision:
    use_rerun: bool
    reason: str


def rerun_decision(
    *,
    planned: Set[str] | None,
    statuses: Mapping[str, str],
    test_parents: Mapping[str, Set[str]],
    cloud_status: str,
    is_latest_run_of_job: bool,
    same_flags: bool,
) -> RerunDecision:
    """``planned``: the unique_ids (models, seeds, snapshots) the op would run, None = all;
    ``statuses``: unique_id → result in the failed dbt Cloud run; ``test_parents``: each
    test's parent nodes; ``same_flags``: the failed run's ``--vars`` / ``--full-refresh`` /
    ``--fail-fast`` are the ones this run would pass (rerun replays the old ones)."""
    if planned is None:
        return RerunDecision(False, "the whole project is selected")
    if cloud_status != "error":
        return RerunDecision(False, f"the dbt Cloud run ended {cloud_status}, not error")
    if not is_latest_run_of_job:
        return RerunDecision(False, "it is no longer its job's latest run (rerun restarts that)")
    if not same_flags:
        return RerunDecision(False, "its flags (--vars, --full-refresh, --fail-fast) changed")
    retried = {uid for uid, status in statuses.items() if status.lower() in RETRIED_STATUSES}
    nodes = {uid for uid in retried if not uid.startswith(("test.", "unit_test."))}
    lone_tests = sorted(
        uid
        for uid in retried - nodes
        if uid.startswith("test.") and not (set(test_parents.get(uid, ())) & nodes)
    )
    if lone_tests:
        return RerunDecision(
            False, f"dbt retry would re-run {lone_tests[0]} without rebuilding its model"
        )
    if nodes != set(planned):
        extra, missing = sorted(nodes - set(planned)), sorted(set(planned) - nodes)
        return RerunDecision(
            False,
            f"dbt retry would run {len(nodes)} nodes, the plan {len(planned)} "
            f"(only in retry: {extra[:3]}, only in the plan: {missing[:3]})",
        )
    return RerunDecision(True, f"dbt retry re-runs exactly the plan's {len(nodes)} nodes")
