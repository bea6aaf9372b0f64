"""The retry decision for one failure chain: budget, backoff, error kind, in-flight runs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.errors import ConfigurationError
from orchestration.recovery.classify import Classification, ErrorKind
from orchestration.recovery.policy import (
    ChainState,
    Decision,
    DecisionKind,
    RetryPolicy,
    decide,
)

ROOT = "abc12345-0000-4000-8000-000000000001"
LATEST = "def67890-0000-4000-8000-000000000002"
FAILED_AT = 1_700_000_000.0

TRANSIENT = Classification(ErrorKind.TRANSIENT, "connection_reset", "connection reset by peer")
DETERMINISTIC = Classification(
    ErrorKind.DETERMINISTIC, "permission_denied", "permission denied for table orders"
)
UNKNOWN = Classification(ErrorKind.UNKNOWN, None, "Kaboom")


def chain(**overrides: object) -> ChainState:
    state = ChainState(
        root_run_id=ROOT,
        latest_run_id=LATEST,
        attempt=0,
        latest_failed_at=FAILED_AT,
        classification=TRANSIENT,
        has_run_in_flight=False,
    )
    return dataclasses.replace(state, **overrides)


# backoff


def test_the_first_retry_waits_the_base_backoff() -> None:
    assert RetryPolicy().backoff_seconds(1) == 60.0


def test_each_further_retry_multiplies_the_backoff_by_the_factor() -> None:
    assert [RetryPolicy().backoff_seconds(n) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]


def test_the_backoff_is_capped() -> None:
    assert RetryPolicy().backoff_seconds(10) == 900.0


def test_a_huge_attempt_number_is_capped_rather_than_overflowing() -> None:
    assert RetryPolicy().backoff_seconds(100_000) == 900.0


def test_attempts_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        RetryPolicy().backoff_seconds(0)


policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(0, 10),
    backoff_base_seconds=st.floats(0, 10_000),
    backoff_factor=st.floats(1, 10),
    backoff_max_seconds=st.floats(0, 100_000),
)


@given(policies, st.integers(1, 2_000))
def test_the_backoff_never_decreases_and_never_exceeds_the_cap(
    policy: RetryPolicy, attempt: int
) -> None:
    current, following = policy.backoff_seconds(attempt), policy.backoff_seconds(attempt + 1)
    assert current <= following <= policy.backoff_max_seconds


@pytest.mark.parametrize(
    "field_value",
    [
        {"max_attempts": -1},
        {"backoff_factor": 0.5},
        {"backoff_base_seconds": float("nan")},
        {"backoff_max_seconds": -1.0},
    ],
    ids=["negative budget", "shrinking backoff", "nan base", "negative cap"],
)
def test_a_nonsensical_policy_is_a_configuration_error(field_value: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**field_value)


# decide


def test_a_transient_failure_is_retried_once_the_backoff_has_passed() -> None:
    decision = decide(RetryPolicy(), chain(), now=FAILED_AT + 60)
    assert (decision.kind, decision.attempt, decision.not_before) == (DecisionKind.LAUNCH, 1, None)


def test_a_transient_failure_waits_for_its_backoff() -> None:
    decision = decide(RetryPolicy(), chain(attempt=1), now=FAILED_AT + 10)
    assert decision == Decision(
        DecisionKind.WAIT_BACKOFF,
        ROOT,
        2,
        "waiting 110 s before attempt 2 of 3 (backoff) for run abc12345: transient error "
        "'connection reset by peer' (pattern connection_reset)",
        not_before=FAILED_AT + 120,
    )


def test_the_backoff_counts_from_the_latest_failure_of_the_chain() -> None:
    decision = decide(RetryPolicy(), chain(attempt=2), now=FAILED_AT + 239)
    assert decision.not_before == FAILED_AT + 240


def test_the_chain_gives_up_when_the_budget_is_spent() -> None:
    decision = decide(RetryPolicy(), chain(attempt=3), now=FAILED_AT + 10_000)
    assert decision.kind is DecisionKind.GIVE_UP_BUDGET


def test_the_budget_give_up_reason_names_the_run_the_attempts_and_the_error() -> None:
    decision = decide(RetryPolicy(), chain(attempt=3), now=FAILED_AT + 10_000)
    assert decision.reason.startswith(
        "giving up on run abc12345 after 3 of 3 retry attempts: latest run def67890 failed with "
        "transient error 'connection reset by peer' (pattern connection_reset)"
    )


def test_a_zero_budget_never_retries() -> None:
    decision = decide(RetryPolicy(max_attempts=0), chain(), now=FAILED_AT + 10_000)
    assert decision.kind is DecisionKind.GIVE_UP_BUDGET


def test_a_deterministic_error_is_not_retried_and_says_what_to_do() -> None:
    decision = decide(RetryPolicy(), chain(classification=DETERMINISTIC), now=FAILED_AT + 60)
    assert decision == Decision(
        DecisionKind.GIVE_UP_DETERMINISTIC,
        ROOT,
        0,
        "not retrying run def67890: deterministic error 'permission denied for table orders' "
        "(pattern permission_denied) — fix the cause and re-execute from the UI "
        "(Re-execute → From asset failure)",
    )


def test_a_deterministic_error_is_reported_as_such_even_when_the_budget_is_spent() -> None:
    decision = decide(
        RetryPolicy(), chain(attempt=3, classification=DETERMINISTIC), now=FAILED_AT + 60
    )
    assert decision.kind is DecisionKind.GIVE_UP_DETERMINISTIC


def test_an_unknown_error_is_not_retried_by_default() -> None:
    decision = decide(RetryPolicy(), chain(classification=UNKNOWN), now=FAILED_AT + 60)
    assert decision.kind is DecisionKind.GIVE_UP_UNKNOWN


def test_the_unknown_give_up_reason_points_at_the_patterns_file() -> None:
    decision = decide(RetryPolicy(), chain(classification=UNKNOWN), now=FAILED_AT + 60)
    assert "error_patterns.json" in decision.reason


def test_an_unknown_error_is_retried_when_the_policy_allows_it() -> None:
    policy = RetryPolicy(retry_unknown_errors=True)
    decision = decide(policy, chain(classification=UNKNOWN), now=FAILED_AT + 60)
    assert decision.kind is DecisionKind.LAUNCH


def test_nothing_is_launched_while_a_run_of_the_chain_is_in_flight() -> None:
    decision = decide(RetryPolicy(), chain(has_run_in_flight=True), now=FAILED_AT + 10_000)
    assert decision.kind is DecisionKind.SKIP_IN_FLIGHT


def test_an_in_flight_run_defers_even_a_give_up() -> None:
    # Regression guard: the latest run is not final while another is running; alerting now
    # would report a chain that may still recover.
    decision = decide(
        RetryPolicy(),
        chain(attempt=3, classification=DETERMINISTIC, has_run_in_flight=True),
        now=FAILED_AT,
    )
    assert decision.kind is DecisionKind.SKIP_IN_FLIGHT


def test_give_up_kinds_say_so() -> None:
    assert {k for k in DecisionKind if k.gives_up} == {
        DecisionKind.GIVE_UP_BUDGET,
        DecisionKind.GIVE_UP_DETERMINISTIC,
        DecisionKind.GIVE_UP_UNKNOWN,
    }


@given(
    policies,
    st.integers(0, 12),
    st.sampled_from([TRANSIENT, DETERMINISTIC, UNKNOWN]),
    st.booleans(),
    st.floats(-10_000, 200_000),
)
def test_a_launch_is_always_within_budget_and_after_the_backoff(
    policy: RetryPolicy,
    attempt: int,
    classification: Classification,
    in_flight: bool,
    elapsed: float,
) -> None:
    state = chain(attempt=attempt, classification=classification, has_run_in_flight=in_flight)
    now = FAILED_AT + elapsed
    decision = decide(policy, state, now=now)
    if decision.kind is DecisionKind.LAUNCH:
        assert not in_flight
        assert classification.kind is not ErrorKind.DETERMINISTIC
        assert decision.attempt == attempt + 1 <= policy.max_attempts
        assert now >= FAILED_AT + policy.backoff_seconds(decision.attempt)
