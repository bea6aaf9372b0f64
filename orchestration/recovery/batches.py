"""Recovery inside a model: the failed microbatches of a dbt microbatch model, as windows.

A microbatch model (dbt >= 1.9, ``incremental_strategy: microbatch``) builds batch by batch over
its ``event_time``. When some batches fail it ends ``partial success`` and run_results.json lists
``batch_results: {successful: [[start, end], …], failed: [[start, end], …]}``. Re-running the
whole model would rebuild every batch that already succeeded (365 for a year of daily batches);
dbt itself re-runs only the failed ones, and so do we: the failed batches become event-time
windows (contiguous batches merged, several windows when they are not contiguous) that the dbt
op passes as ``--event-time-start`` / ``--event-time-end``.

That is only safe while the batches still mean the same thing. If the model's ``batch_size``,
``begin``, ``event_time``, ``lookback`` or the ``event_time`` of one of its inputs changed since
the failed run, the old windows may not line up with today's batches: the model is rebuilt
whole, and the plan says why.

Pure: plain tuples of ISO timestamps in, windows out; configs are read from manifest dicts the
adapters pass in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Batch = tuple[str, str]
"""One dbt batch: (event_time_start, event_time_end) as dbt writes them, ISO 8601, end exclusive."""

MICROBATCH_STRATEGY = "microbatch"


@dataclass(frozen=True)
class BatchWindow:
    """Contiguous batches as one event-time window: ``start`` inclusive, ``end`` exclusive."""

    start: str
    end: str
    batches: int
    """How many dbt batches the window holds."""

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "batches": self.batches}

    def describe(self) -> str:
        """``2026-09-15`` for one daily batch, else ``2026-09-15 to 2026-09-18 (3 batches)``."""
        if self.batches == 1:
            return _moment(self.start)
        return f"{_moment(self.start)} to {_moment(self.end)} ({self.batches} batches)"


def _moment(timestamp: str) -> str:
    """The day alone for midnight timestamps (daily and coarser batches), else to the minute."""
    return timestamp[:10] if timestamp[11:19] in ("", "00:00:00") else timestamp[:16]


def batch_windows(batches: Iterable[Batch]) -> tuple[BatchWindow, ...]:
    """The batches merged into windows, earliest first: a batch that starts where the previous
    one ended extends its window. Duplicates (dbt can list a batch twice) count once."""
    windows: list[BatchWindow] = []
    for start, end in sorted(set(batches)):
        last = windows[-1] if windows else None
        if last is not None and _same_instant(last.end, start):
            windows[-1] = BatchWindow(last.start, end, last.batches + 1)
        elif last is not None and start < last.end:
            continue  # overlaps the window already (a batch listed twice with another form)
        else:
            windows.append(BatchWindow(start, end, 1))
    return tuple(windows)


def _same_instant(left: str, right: str) -> bool:
    return left == right or left.replace("+00:00", "Z") == right.replace("+00:00", "Z")


def describe_windows(windows: Iterable[BatchWindow]) -> str:
    """All windows on one line, for plan details and log lines."""
    return ", ".join(window.describe() for window in windows)


@dataclass(frozen=True)
class MicrobatchConfig:
    """What decides a microbatch model's batches; if any of it changes, old windows are void."""

    event_time: str | None
    batch_size: str | None
    begin: str | None
    lookback: int | None
    input_event_times: tuple[tuple[str, str | None], ...] = ()
    """(input unique_id, its ``event_time``): what dbt filters each ref to a batch by."""

    def differences(self, other: MicrobatchConfig) -> list[str]:
        """Human-readable changes from ``self`` (the failed run's) to ``other`` (today's)."""
        changes = []
        for name in ("batch_size", "begin", "event_time", "lookback"):
            before, after = getattr(self, name), getattr(other, name)
            if before != after:
                changes.append(f"{name} {before} → {after}")
        if self.input_event_times != other.input_event_times:
            changes.append("event_time of its inputs changed")
        return changes


def microbatch_config(node: Mapping[str, Any], nodes: Mapping[str, Any]) -> MicrobatchConfig | None:
    """The microbatch config of one manifest node, or None when it is no microbatch model."""
    config = node.get("config") or {}
    if config.get("incremental_strategy") != MICROBATCH_STRATEGY:
        return None
    parents = (node.get("depends_on") or {}).get("nodes") or ()
    lookback = config.get("lookback")
    return MicrobatchConfig(
        event_time=config.get("event_time"),
        batch_size=config.get("batch_size"),
        begin=str(config["begin"]) if config.get("begin") is not None else None,
        lookback=int(lookback) if isinstance(lookback, int) else None,
        input_event_times=tuple(
            sorted(
                (parent, ((nodes.get(parent) or {}).get("config") or {}).get("event_time"))
                for parent in parents
            )
        ),
    )


def microbatch_configs(manifest: Mapping[str, Any]) -> dict[str, MicrobatchConfig]:
    """unique_id → config of every microbatch model in a manifest (sources count as inputs)."""
    nodes = {**manifest.get("sources", {}), **manifest.get("nodes", {})}
    found: dict[str, MicrobatchConfig] = {}
    for unique_id, node in manifest.get("nodes", {}).items():
        if unique_id.startswith("model."):
            config = microbatch_config(node, nodes)
            if config is not None:
                found[unique_id] = config
    return found


def config_change(
    run_configs: Mapping[str, MicrobatchConfig] | None,
    today: MicrobatchConfig | None,
    *,
    unique_id: str,
    run_id: str,
) -> str | None:
    """Why the failed run's windows cannot be reused for a model, or None when they can.

    ``run_configs`` are the microbatch configs of the failed run's stored manifest (None: none
    was stored, so nothing proves the old batches still line up, and the model is rebuilt).
    """
    if today is None:
        return "it is no longer a microbatch model"
    if run_configs is None:
        return f"run {run_id} left no stored manifest to compare its microbatch config with"
    before = run_configs.get(unique_id)
    if before is None:
        return f"it was no microbatch model in run {run_id}"
    changes = before.differences(today)
    if changes:
        return f"its microbatch config changed since run {run_id} ({'; '.join(changes)})"
    return None
