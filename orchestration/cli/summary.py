"""The few lines ``python -m orchestration run`` ends with: what happened, where it is, what next.

Dagster's event stream (hundreds of lines per run) goes to a log file instead of the terminal;
people watching a run see dbt's own progress, then this summary. The first line keeps the
``JOB: STATUS  run_id=<id>`` shape that scripts parse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.artifacts.run_results import RunResults

_KIND_LABELS = (
    ("model", "models"),
    ("seed", "seeds"),
    ("snapshot", "snapshots"),
    ("test", "tests"),
    ("unit_test", "unit tests"),
)


@dataclass
class RunSummary:
    job: str
    status: str
    """SUCCESS, FAILURE, or ERROR (the run could not be started or crashed)."""
    run_id: str | None
    results: RunResults | None = None
    warehouse: str | None = None
    artifacts: str | None = None
    log_file: Path | None = None
    dagster_home: Path | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"{self.job}: {self.status}  run_id={self.run_id or '-'}"]
        if self.error:
            lines.append(f"  error     : {self.error}")
        lines += [f"  {label:<10}: {counts}" for label, counts in outcome_counts(self.results)]
        if self.results is None and self.run_id:
            lines.append("  dbt       : no run_results.json stored for this run (see the log)")
        for label, value in (
            ("warehouse", self.warehouse),
            ("artifacts", self.artifacts),
            ("log", self.log_file and f"{self.log_file}  (Dagster's full event stream)"),
            ("dagster", self.dagster_home and f"DAGSTER_HOME={self.dagster_home}  (`make dev`)"),
        ):
            if value:
                lines.append(f"  {label:<10}: {value}")
        if self.status != "SUCCESS" and self.run_id:
            lines.append(f"  plan      : python -m orchestration plan --run-id {self.run_id}")
        lines += [f"  note      : {note}" for note in self.notes]
        return lines


def outcome_counts(results: RunResults | None) -> Iterable[tuple[str, str]]:
    """("models", "9 success, 1 error, 3 skipped") per resource type dbt reported on."""
    if results is None:
        return []
    by_kind: dict[str, Counter[str]] = {}
    for result in results.by_unique_id.values():
        by_kind.setdefault(result.resource_type, Counter())[result.status] += 1
    rows = []
    for kind, label in _KIND_LABELS:
        if kind in by_kind:
            counts = by_kind[kind]
            rows.append((label, ", ".join(f"{n} {status}" for status, n in counts.most_common())))
    return rows
