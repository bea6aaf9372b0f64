"""``group_chains`` and ``asset_states``: from the tick's plain data to chains and reasons.

The expected chains, reasons and details are written out by hand from the fixtures below.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import DagsterRunStatus

from orchestration.artifacts.run_results import NodeResult, RunResults
from orchestration.history.tick_state import FailedAsset, FailureKind, RunEvidence, RunInfo
from orchestration.recovery import AssetGraph, AssetState, Reason
from orchestration.retry_sensor.chains import asset_states, group_chains


def run(
    run_id: str,
    *,
    tags: Mapping[str, str] | None = None,
    created_at: float = 100.0,
    status: DagsterRunStatus = DagsterRunStatus.FAILURE,
    parent_root_run_id: str | None = None,
) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        status=status,
        job_name="daily",
        tags=dict(tags or {}),
        created_at=created_at,
        end_time=None,
        asset_selection=None,
        run_config={},
        parent_root_run_id=parent_root_run_id,
    )


def failed(key: str, run_id: str, kind: FailureKind = FailureKind.UNMATERIALIZED) -> FailedAsset:
    return FailedAsset(key, run_id, kind)


# ---------------------------------------------------------------- group_chains

ROOT_A = run("root-a", created_at=100.0)
RETRY_A1 = run(
    "retry-a1",
    tags={"orchestration/retry_root": "root-a", "orchestration/attempt": "1"},
    created_at=200.0,
)
UI_REEXEC_A = run("ui-a", tags={"dagster/root_run_id": "root-a"}, created_at=300.0)
ROOT_B = run("root-b", created_at=150.0)
ROOT_C = run("root-c", created_at=50.0)


def test_failed_assets_group_by_the_root_of_the_run_they_failed_in() -> None:
    runs = {r.run_id: r for r in (ROOT_A, RETRY_A1, UI_REEXEC_A, ROOT_B)}
    chains = group_chains(
        {
            "x": failed("x", "retry-a1"),  # our retry tag names root-a
            "y": failed("y", "ui-a"),  # Dagster's root_run_id tag names root-a
            "z": failed("z", "root-b"),  # a root is its own chain
        },
        runs,
    )

    assert list(chains) == ["root-a", "root-b"]
    assert set(chains["root-a"].failed) == {"x", "y"}
    assert {r.run_id for r in chains["root-a"].runs} == {"retry-a1", "ui-a"}
    assert chains["root-a"].failed_run_ids == ["retry-a1", "ui-a"]
    assert chains["root-a"].latest.run_id == "ui-a"  # created last
    assert chains["root-a"].attempt == 1  # the retry's attempt tag; the UI run has none
    assert set(chains["root-b"].failed) == {"z"}
    assert chains["root-b"].attempt == 0


def test_the_runs_parent_root_run_id_groups_when_no_tag_says_so() -> None:
    child = run("child", parent_root_run_id="root-c", created_at=60.0)
    chains = group_chains({"k": failed("k", "child")}, {"child": child})
    assert list(chains) == ["root-c"]


def test_earlier_retries_join_only_chains_that_have_failed_assets() -> None:
    retry_b = run(
        "retry-b1",
        tags={"orchestration/retry_root": "root-b", "orchestration/attempt": "2"},
        created_at=400.0,
    )
    retry_c = run("retry-c1", tags={"orchestration/retry_root": "root-c"})
    chains = group_chains(
        {"z": failed("z", "root-b")},
        {"root-b": ROOT_B},
        {"root-b": [retry_b, ROOT_B], "root-c": [retry_c]},
    )

    assert list(chains) == ["root-b"]  # root-c has no failed asset: no chain
    assert sorted(r.run_id for r in chains["root-b"].runs) == ["retry-b1", "root-b"]
    assert chains["root-b"].attempt == 2  # counted from the earlier retry
    assert chains["root-b"].latest.run_id == "retry-b1"
    assert chains["root-b"].failed_run_ids == ["root-b"]  # retries own no failed asset


def test_no_failed_assets_no_chains() -> None:
    assert group_chains({}, {"root-a": ROOT_A}, {"root-a": [RETRY_A1]}) == {}


# ---------------------------------------------------------------- asset_states

# a -> b -> c -> d ; e is a root of its own; p is a Python asset (no unique_id)
GRAPH = AssetGraph.from_parents({"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "e": [], "p": []})
UNIQUE_IDS = {key: f"model.proj.{key}" for key in "abcde"}
STEP_ASSETS = {"dbt_models": frozenset("abcde"), "python_step": frozenset({"p"})}
RUN_ID = "run-1"


def evidence(
    statuses: Mapping[str, tuple[str, str | None]],
    *,
    failed_steps: frozenset[str] = frozenset(),
    step_errors: Mapping[str, str] | None = None,
    with_dbt: bool = True,
) -> RunEvidence:
    results = RunResults(
        invocation_id="inv",
        dbt_version="1.11.2",
        generated_at="2025-06-02T00:00:00Z",
        command="build",
        args={"which": "build"},
        elapsed_time_s=1.0,
        results=tuple(
            NodeResult(f"model.proj.{key}", "model", status, message)
            for key, (status, message) in statuses.items()
        ),
    )
    return RunEvidence(
        run_id=RUN_ID,
        messages=(),
        failed_steps=failed_steps,
        step_errors=dict(step_errors or {}),
        dbt_results=results if with_dbt else None,
    )


def states_for(
    assets: list[FailedAsset],
    run_evidence: RunEvidence | None,
    *,
    status: DagsterRunStatus = DagsterRunStatus.FAILURE,
) -> dict[str, tuple[Reason, str]]:
    found = asset_states(
        assets,
        evidence={} if run_evidence is None else {RUN_ID: run_evidence},
        runs={RUN_ID: run(RUN_ID, status=status)},
        graph=GRAPH,
        unique_ids=UNIQUE_IDS,
        step_assets=STEP_ASSETS,
    )
    for key, state in found.items():
        assert state.key == key
        assert state.failed is True
        assert state.run_id == RUN_ID
    return {key: (state.reason, state.detail) for key, state in found.items()}


def test_a_dbt_error_causes_the_skips_below_it_and_names_the_nearest_cause() -> None:
    run_evidence = evidence(
        {
            "a": ("error", 'Database Error in model a\n  relation "raw" does not exist\n\n'),
            "b": ("skipped", "Skipping due to upstream failure"),
            "c": ("skipped", None),
        }
    )
    states = states_for([failed(k, RUN_ID) for k in "abc"], run_evidence)
    assert states == {
        "a": (Reason.ERRORED, 'Database Error in model a · relation "raw" does not exist'),
        "b": (Reason.UPSTREAM_FAILED, "skipped because a failed"),
        "c": (Reason.UPSTREAM_FAILED, "skipped because a failed"),
    }


def test_the_nearest_of_two_failures_is_named() -> None:
    run_evidence = evidence(
        {"a": ("error", "boom a"), "c": ("error", "boom c"), "d": ("skipped", None)}
    )
    states = states_for([failed(k, RUN_ID) for k in "acd"], run_evidence)
    assert states["d"] == (Reason.UPSTREAM_FAILED, "skipped because c failed")


def test_a_failed_blocking_check_is_a_cause_too() -> None:
    states = states_for(
        [
            FailedAsset("a", RUN_ID, FailureKind.CHECK_FAILED, ("not_null_a_id",)),
            failed("b", RUN_ID),
        ],
        evidence({"a": ("success", None), "b": ("skipped", None)}),
    )
    assert states == {
        "a": (Reason.CHECK_FAILED, "blocking check not_null_a_id failed in run run-1"),
        "b": (Reason.UPSTREAM_FAILED, "skipped because a failed"),
    }


def test_a_check_that_never_ran() -> None:
    states = states_for(
        [
            FailedAsset(
                "e", RUN_ID, FailureKind.CHECK_NOT_EXECUTED, ("unique_e_id", "not_null_e_id")
            )
        ],
        None,
    )
    assert states == {
        "e": (
            Reason.CHECK_NOT_EXECUTED,
            "materialized, but blocking check unique_e_id, not_null_e_id never ran "
            "(run run-1 failed)",
        )
    }


def test_fail_fast_cut_offs_are_not_upstream_failures() -> None:
    states = states_for(
        [failed("a", RUN_ID), failed("e", RUN_ID)],
        evidence({"a": ("error", "boom"), "e": ("skipped", "Skipping due to fail_fast")}),
    )
    assert states["e"] == (Reason.FAIL_FAST, "cut off by --fail-fast when another node failed")


def test_a_failed_python_step_errors_its_asset_with_the_step_error() -> None:
    states = states_for(
        [failed("p", RUN_ID)],
        evidence(
            {},
            failed_steps=frozenset({"python_step"}),
            step_errors={"python_step": "ValueError: bad input\nTraceback ..."},
        ),
    )
    assert states == {
        "p": (Reason.ERRORED, "step python_step failed: ValueError: bad input · Traceback ...")
    }


def test_a_failed_dbt_step_does_not_error_a_dbt_asset_without_a_result() -> None:
    # The dbt step failing says nothing about a model dbt never reached.
    states = states_for(
        [failed("e", RUN_ID)],
        evidence({}, failed_steps=frozenset({"dbt_models"}), step_errors={"dbt_models": "x"}),
    )
    assert states == {"e": (Reason.NOT_REACHED, "run run-1 ended before reaching it")}


def test_without_evidence_or_results_assets_were_not_reached() -> None:
    assert states_for([failed("b", RUN_ID)], None) == {
        "b": (Reason.NOT_REACHED, "run run-1 ended before reaching it")
    }
    assert states_for([failed("b", RUN_ID)], evidence({}, with_dbt=False)) == {
        "b": (Reason.NOT_REACHED, "run run-1 ended before reaching it")
    }


def test_a_canceled_run_says_so() -> None:
    states = states_for([failed("b", RUN_ID)], None, status=DagsterRunStatus.CANCELED)
    assert states == {"b": (Reason.NOT_REACHED, "run run-1 was canceled before it")}


def test_a_long_error_is_cut_to_two_hundred_characters_and_an_empty_one_gets_a_default() -> None:
    states = states_for(
        [failed("a", RUN_ID), failed("e", RUN_ID)],
        evidence({"a": ("error", "x" * 500), "e": ("error", "  \n ")}),
    )
    assert states["a"] == (Reason.ERRORED, "x" * 199 + "…")
    assert states["e"] == (Reason.ERRORED, "dbt reported an error")


def test_more_than_five_causes_are_counted_not_listed() -> None:
    parents = {f"m{i}": [] for i in range(7)} | {"sink": [f"m{i}" for i in range(7)]}
    graph = AssetGraph.from_parents(parents)
    unique_ids = {key: f"model.proj.{key}" for key in parents}
    results = RunResults(
        invocation_id="inv",
        dbt_version="1.11.2",
        generated_at="2025-06-02T00:00:00Z",
        command="build",
        args={},
        elapsed_time_s=1.0,
        results=tuple(NodeResult(f"model.proj.m{i}", "model", "error", "boom") for i in range(7)),
    )
    found = asset_states(
        [failed(key, RUN_ID) for key in parents],
        evidence={RUN_ID: RunEvidence(RUN_ID, (), frozenset(), {}, results)},
        runs={RUN_ID: run(RUN_ID)},
        graph=graph,
        unique_ids=unique_ids,
        step_assets={},
    )
    assert found["sink"] == AssetState(
        "sink",
        True,
        Reason.UPSTREAM_FAILED,
        "skipped because m0, m1, m2, m3, m4 and 2 more failed",
        RUN_ID,
    )


def test_only_errors_and_failed_checks_are_causes() -> None:
    # a's check never ran and b was cut off by fail-fast: neither made c skip (e, which did
    # error, is not above c).
    states = states_for(
        [
            FailedAsset("a", RUN_ID, FailureKind.CHECK_NOT_EXECUTED, ("not_null_a_id",)),
            failed("b", RUN_ID),
            failed("c", RUN_ID),
            failed("e", RUN_ID),
        ],
        evidence({"b": ("skipped", "Skipping due to fail_fast"), "e": ("error", "boom")}),
    )
    assert states["b"][0] is Reason.FAIL_FAST
    assert states["c"] == (Reason.NOT_REACHED, "run run-1 ended before reaching it")
