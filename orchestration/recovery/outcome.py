"""What happened in one run, as plain data.

Adapters fill a ``RunOutcome`` from Dagster's event log (planned assets, materializations,
check evaluations, failed steps) and, where stored, the run's dbt ``run_results.json``. The
planner then never talks to Dagster: it can be tested on hand-built outcomes, and the same rule
serves the UI, the sensor, the op and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from orchestration.artifacts.run_results import RunResults
from orchestration.recovery.batches import MicrobatchConfig


class CheckStatus(StrEnum):
    """The state of one asset check in one run."""

    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    """The dbt test itself errored (bad SQL, missing column); dagster-dbt reports it as failed."""
    NOT_EXECUTED = "not_executed"
    """Planned, but no evaluation was recorded (the model failed, fail-fast, the run died)."""


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check planned by a run, and how it ended."""

    asset: str
    check_name: str
    blocking: bool
    status: CheckStatus

    @property
    def holds_back_its_asset(self) -> bool:
        """A blocking check that did not pass means the asset must be rebuilt and re-checked.

        Warn-severity (non-blocking) checks never do: they report, they do not gate.
        """
        return self.blocking and self.status is not CheckStatus.PASSED


class RunStatus(StrEnum):
    """A run's status, folded to what planning cares about.

    Adapters map Dagster's QUEUED/STARTING/STARTED/CANCELING to ``IN_PROGRESS``: such a run has
    not finished, so what it will materialize is not yet known.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    CANCELED = "canceled"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class RunOutcome:
    """Everything the planner needs to know about one finished run."""

    run_id: str
    status: RunStatus
    planned: frozenset[str]
    """Asset keys the run selected."""
    materialized: frozenset[str]
    """Asset keys with a materialization event in this run."""
    checks: tuple[CheckOutcome, ...] = ()
    dbt_results: RunResults | None = None
    """run_results.json of the run's dbt invocation(s), merged, if stored."""
    failed_steps_assets: frozenset[str] = frozenset()
    """Non-dbt assets whose step errored: dbt's own errors come from ``dbt_results``."""
    resumes_chain: bool = False
    """A *From failure* re-execution of the runs before it in its chain: Dagster planned every
    asset of its steps, but our dbt op rebuilt only the chain's plan and carried the rest over.
    The planner then leaves the carried-over assets to the earlier runs that decided them."""
    microbatch_configs: Mapping[str, MicrobatchConfig] | None = None
    """unique_id → microbatch config in the run's stored manifest; None when none was stored
    (a partial-success model is then rebuilt whole: nothing proves its old batches still fit)."""
    full_refresh: bool = False
    """The run built with ``--full-refresh`` (``weekly_full_refresh``): its retry does too."""


def _keys(value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(f"expected a list of asset keys, got {type(value).__name__}")
    return frozenset(str(key) for key in value)
