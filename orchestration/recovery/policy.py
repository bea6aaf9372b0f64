"""When to retry a failure chain: budget, backoff and error kind, as one pure function.

A *failure chain* is a failed root run and the retries launched for it (root → retry 1 → retry 2
…). `decide` looks at what the sensor knows about one chain and says what to do now; the sensor
turns the answer into a RunRequest, a SkipReason or an alert. No clock and no I/O in here: `now` is
an argument, so every branch is testable without sleeping.

Unknown errors are not retried by default (`retry_unknown_errors=False`). Most failures nobody has
seen before are new deterministic ones (a code change, a bad row), and retrying them spends the
whole budget, several backoff intervals and warehouse time before a person hears about it. Missing
a genuinely transient error costs one click on *Re-execute → From asset failure*, and teaching the
sensor about it is one entry in `error_patterns.json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from orchestration.errors import ConfigurationError
from orchestration.recovery.classify import Classification, ErrorKind

SHORT_RUN_ID_CHARS = 8  # what the Dagster UI shows


@dataclass(frozen=True)
class RetryPolicy:
    """Budget and backoff for automatic retries of one failure chain."""

    max_attempts: int = 3  # retries per chain: the root run plus up to this many retries
    backoff_base_seconds: float = 60.0
    backoff_factor: float = 2.0
    backoff_max_seconds: float = 900.0
    retry_unknown_errors: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError("max_attempts must be an integer (0 disables retries)")
        if self.max_attempts < 0:
            raise ConfigurationError(f"max_attempts is {self.max_attempts}; use 0 or more")
        if not (math.isfinite(self.backoff_base_seconds) and self.backoff_base_seconds >= 0):
            raise ConfigurationError("backoff_base_seconds must be a finite number >= 0")
        if not (math.isfinite(self.backoff_factor) and self.backoff_factor >= 1):
            raise ConfigurationError("backoff_factor must be a finite number >= 1")
        if not (math.isfinite(self.backoff_max_seconds) and self.backoff_max_seconds >= 0):
            raise ConfigurationError("backoff_max_seconds must be a finite number >= 0")

    def backoff_seconds(self, attempt: int) -> float:
        """Wait before retry `attempt` (1-based): base, base·factor, base·factor², … capped."""
        if attempt < 1:
            raise ValueError(f"attempt is {attempt}; retries are numbered from 1")
        try:
            uncapped = self.backoff_base_seconds * self.backoff_factor ** (attempt - 1)
        except OverflowError:
            uncapped = math.inf
        return min(uncapped, self.backoff_max_seconds)


@dataclass(frozen=True)
class ChainState:
    """What the sensor knows about one failure chain at the time of a tick."""

    root_run_id: str
    latest_run_id: str
    attempt: int  # retries already launched; 0 = the root itself failed, no retry yet
    latest_failed_at: float  # unix seconds when the latest run of the chain ended
    classification: Classification
    has_run_in_flight: bool


class DecisionKind(StrEnum):
    LAUNCH = "launch"
    WAIT_BACKOFF = "wait_backoff"
    GIVE_UP_BUDGET = "give_up_budget"
    GIVE_UP_DETERMINISTIC = "give_up_deterministic"
    GIVE_UP_UNKNOWN = "give_up_unknown"
    SKIP_IN_FLIGHT = "skip_in_flight"

    @property
    def gives_up(self) -> bool:
        return self in _GIVE_UPS


_GIVE_UPS = frozenset(
    {DecisionKind.GIVE_UP_BUDGET, DecisionKind.GIVE_UP_DETERMINISTIC, DecisionKind.GIVE_UP_UNKNOWN}
)


@dataclass(frozen=True)
class Decision:
    """What to do with a chain now.

    `attempt` is the retry to launch for LAUNCH and WAIT_BACKOFF, and the retries already made
    otherwise. `not_before` is set for WAIT_BACKOFF only (unix seconds). `reason` is for people:
    a SkipReason, a run tag, an alert.
    """

    kind: DecisionKind
    chain_root: str
    attempt: int
    reason: str
    not_before: float | None = None


def decide(policy: RetryPolicy, chain: ChainState, *, now: float) -> Decision:
    """Decide the next step for `chain`.

    Order: a run in flight first (nothing is final yet), then the error kind (a deterministic error
    is reported as such even with budget left — and as such rather than as "out of budget" when
    both hold, since it says what to fix), then the budget, then the backoff.
    """
    if chain.has_run_in_flight:
        return Decision(
            DecisionKind.SKIP_IN_FLIGHT,
            chain.root_run_id,
            chain.attempt,
            f"a run of the chain of {_short(chain.root_run_id)} is queued or running; "
            "waiting for it to finish",
        )
    return _give_up(policy, chain) or _launch_or_wait(policy, chain, now=now)


def _give_up(policy: RetryPolicy, chain: ChainState) -> Decision | None:
    """A give-up for the error kind or the spent budget, or ``None`` to go on retrying."""
    root = _short(chain.root_run_id)
    latest = _short(chain.latest_run_id)
    error = _describe(chain.classification)
    if chain.classification.kind is ErrorKind.DETERMINISTIC:
        kind = DecisionKind.GIVE_UP_DETERMINISTIC
        reason = (
            f"not retrying run {latest}: {error} — fix the cause and re-execute "
            "from the UI (Re-execute → From asset failure)"
        )
    elif chain.classification.kind is ErrorKind.UNKNOWN and not policy.retry_unknown_errors:
        kind = DecisionKind.GIVE_UP_UNKNOWN
        reason = (
            f"not retrying run {latest}: unrecognised {error} — automatic retries are for known "
            "transient errors; re-execute from the UI once the cause is understood, or add a "
            "pattern to orchestration/recovery/error_patterns.json"
        )
    elif chain.attempt >= policy.max_attempts:
        kind = DecisionKind.GIVE_UP_BUDGET
        reason = (
            f"giving up on run {root} after {chain.attempt} of {policy.max_attempts} retry "
            f"attempts: latest run {latest} failed with {error} — re-execute from the UI "
            "(Re-execute → From asset failure) when the cause is gone"
        )
    else:
        return None
    return Decision(kind, chain.root_run_id, chain.attempt, reason)


def _launch_or_wait(policy: RetryPolicy, chain: ChainState, *, now: float) -> Decision:
    """The next attempt: now, or once its backoff since the latest failure has passed."""
    root = _short(chain.root_run_id)
    error = _describe(chain.classification)
    next_attempt = chain.attempt + 1
    not_before = chain.latest_failed_at + policy.backoff_seconds(next_attempt)
    if now < not_before:
        return Decision(
            DecisionKind.WAIT_BACKOFF,
            chain.root_run_id,
            next_attempt,
            f"waiting {math.ceil(not_before - now)} s before attempt {next_attempt} of "
            f"{policy.max_attempts} (backoff) for run {root}: {error}",
            not_before=not_before,
        )
    return Decision(
        DecisionKind.LAUNCH,
        chain.root_run_id,
        next_attempt,
        f"launching attempt {next_attempt} of {policy.max_attempts} for run {root}: "
        f"latest run {_short(chain.latest_run_id)} failed with {error}",
    )


def _describe(classification: Classification) -> str:
    kind = "error" if classification.kind is ErrorKind.UNKNOWN else f"{classification.kind} error"
    text = f"{kind} '{classification.message_excerpt or 'no message'}'"
    if classification.pattern is not None:
        text += f" (pattern {classification.pattern})"
    return text


def _short(run_id: str) -> str:
    return run_id[:SHORT_RUN_ID_CHARS]
