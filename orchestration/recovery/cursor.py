"""The retry sensor's cursor: which failed runs were handled, and the give-up alerts' outbox.

Dagster stores a sensor cursor as one string and hands it back on the next tick. Keeping what the
sensor already did in it means that a tick evaluated twice (overlapping ticks, a daemon restart
after a launch) neither launches a second retry for the same failed run nor alerts twice. Retries
are additionally launched with a deterministic `retry_run_key`, which Dagster deduplicates per
sensor: even a lost cursor cannot cause a duplicate launch, only a repeated alert.

Alerts are delivered at least once and at most once per give-up: a give-up's alert waits in
`alerts` (the outbox) until the receiver accepted it, is retried on later ticks with backoff, and
after `max_deliveries` failed attempts is dropped (the sensor says so, once). Delivered and
dropped give-ups are remembered in `reported`, so they are never queued again. One gap is left,
as with any cursor: a tick whose POST succeeded but whose cursor was never stored sends again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

CURSOR_VERSION = 3
READABLE_VERSIONS = frozenset({1, 2, 3})
"""Version 1 had no outbox and recorded chain roots in `reported`; version 2 had no watch fields.
Both read as is: a cursor without a full read on record makes the next tick read in full."""
RETRY_RUN_KEY_PREFIX = "retry"
GAVE_UP_PREFIX = "gave_up"


def retry_run_key(root_run_id: str, attempt: int) -> str:
    """The run_key of retry `attempt` of the chain rooted at `root_run_id`.

    Deterministic, so two ticks asking for the same retry ask Dagster for the same run_key and
    Dagster launches it once.
    """
    if not root_run_id:
        raise ValueError("root_run_id must not be empty")
    if attempt < 1:
        raise ValueError(f"attempt is {attempt}; retries are numbered from 1")
    return f"{RETRY_RUN_KEY_PREFIX}:{root_run_id}:{attempt}"


def gave_up_marker(kind: str) -> str:
    """The `handled` value recording that the sensor gave up on a run, e.g. "gave_up:budget"."""
    return f"{GAVE_UP_PREFIX}:{kind}"


def alert_retry_delay(failures: int, *, base_seconds: float, max_seconds: float) -> float:
    """Wait after the `failures`-th failed delivery: base, 2·base, 4·base, … capped."""
    if failures < 1:
        raise ValueError(f"failures is {failures}; delays follow a failed delivery")
    return min(base_seconds * 2.0 ** min(failures - 1, 60), max_seconds)


@dataclass(frozen=True)
class PendingAlert:
    """A give-up alert the receiver has not accepted yet."""

    payload: Mapping[str, Any]
    """The alert as plain JSON data (``Alert.to_dict`` of the sensor's alerts module)."""
    failures: int = 0
    """Failed deliveries so far."""
    next_attempt_at: float = 0.0
    """Unix seconds; not sent again before then."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": dict(self.payload),
            "failures": self.failures,
            "next_attempt_at": self.next_attempt_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PendingAlert:
        if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
            raise ValueError("a pending alert must be an object with a 'payload' object")
        failures, due = data.get("failures", 0), data.get("next_attempt_at", 0.0)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise ValueError("a pending alert's 'failures' must be a non-negative integer")
        if isinstance(due, bool) or not isinstance(due, int | float) or not math.isfinite(due):
            raise ValueError("a pending alert's 'next_attempt_at' must be a number")
        return cls(payload=data["payload"], failures=failures, next_attempt_at=float(due))


@dataclass(frozen=True)
class RetryCursor:
    """Immutable; the `with_*` methods and `pruned` return new cursors."""

    version: int = CURSOR_VERSION
    # run_id of a failed run → run_key of the retry launched for it, or gave_up_marker(kind)
    handled: Mapping[str, str] = field(default_factory=dict)
    # give-ups (the run id given up on) whose alert was delivered, or dropped after retries
    reported: frozenset[str] = frozenset()
    # the event log's high-water mark when the last tick began (0: never read in full)
    last_seen_storage_id: int = 0
    # the outbox: give-up (run id) → its alert, until the receiver accepts it
    alerts: Mapping[str, PendingAlert] = field(default_factory=dict)
    # what the last full read left to watch for (see `stale_reason` and `run_ends_reason`)
    full_read_at: float = 0.0
    settings_key: str = ""
    open_chains: bool = False
    """The last full read found failure chains: any run that ends may heal or fail them."""
    wake_at: float | None = None
    """The earliest end of a backoff the last full read waited for."""

    def __post_init__(self) -> None:
        # A read-only copy: a cursor handed to the next tick cannot be changed behind its back.
        object.__setattr__(self, "handled", MappingProxyType(dict(self.handled)))
        object.__setattr__(self, "reported", frozenset(self.reported))
        object.__setattr__(self, "alerts", MappingProxyType(dict(self.alerts)))

    def with_alert(self, give_up_id: str, payload: Mapping[str, Any], *, now: float) -> RetryCursor:
        """Queue the alert of a give-up, due now; a give-up already queued or reported is left
        alone (at most one alert per give-up)."""
        if give_up_id in self.alerts or give_up_id in self.reported:
            return self
        pending = PendingAlert(payload=dict(payload), next_attempt_at=now)
        return replace(self, alerts={**self.alerts, give_up_id: pending})

    def due_alerts(self, now: float) -> list[str]:
        """Queued give-ups whose next delivery attempt is due, oldest schedule first."""
        due = [(alert.next_attempt_at, key) for key, alert in self.alerts.items()]
        return [key for at, key in sorted(due) if at <= now]

    def with_alert_delivered(self, give_up_id: str) -> RetryCursor:
        """The receiver accepted it: out of the outbox, never sent again."""
        alerts = {key: value for key, value in self.alerts.items() if key != give_up_id}
        return replace(self, alerts=alerts, reported=self.reported | {give_up_id})

    def with_alert_failed(
        self,
        give_up_id: str,
        *,
        now: float,
        max_deliveries: int,
        base_seconds: float,
        max_seconds: float,
    ) -> tuple[RetryCursor, bool]:
        """Count a failed delivery; (cursor, True) when that was the last one allowed, in which
        case the alert is dropped from the outbox and remembered as reported."""
        pending = self.alerts[give_up_id]
        failures = pending.failures + 1
        if failures >= max_deliveries:
            return self.with_alert_delivered(give_up_id), True
        delay = alert_retry_delay(failures, base_seconds=base_seconds, max_seconds=max_seconds)
        updated = replace(pending, failures=failures, next_attempt_at=now + delay)
        return replace(self, alerts={**self.alerts, give_up_id: updated}), False

    def with_handled(self, run_id: str, outcome: str) -> RetryCursor:
        return replace(self, handled={**self.handled, run_id: outcome})

    def with_reported(self, give_up_id: str) -> RetryCursor:
        return replace(self, reported=self.reported | {give_up_id})

    def with_last_seen_storage_id(self, storage_id: int) -> RetryCursor:
        """Advance the high-water mark; it never moves backwards."""
        return replace(self, last_seen_storage_id=max(self.last_seen_storage_id, storage_id))

    def after_full_read(
        self,
        *,
        high_water: int,
        now: float,
        settings_key: str,
        open_chains: bool,
        wake_at: float | None,
    ) -> RetryCursor:
        """Record a full read that began at event-log id `high_water`, and what it waits for."""
        return replace(
            self,
            last_seen_storage_id=high_water,
            full_read_at=now,
            settings_key=settings_key,
            open_chains=open_chains,
            wake_at=wake_at,
        )

    def pruned(self, keep_run_ids: Set[str]) -> RetryCursor:
        """Forget runs outside `keep_run_ids` (e.g. runs older than the sensor's lookback window).

        Bounds the cursor's size: without it, every failure ever seen stays in it. The outbox is
        kept: an undelivered alert is still owed, and `max_deliveries` bounds it.
        """
        return replace(
            self,
            handled={k: v for k, v in self.handled.items() if k in keep_run_ids},
            reported=self.reported & keep_run_ids,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "handled": dict(sorted(self.handled.items())),
                "reported": sorted(self.reported),
                "last_seen_storage_id": self.last_seen_storage_id,
                "alerts": {key: alert.to_dict() for key, alert in sorted(self.alerts.items())},
                "full_read_at": self.full_read_at,
                "settings_key": self.settings_key,
                "open_chains": self.open_chains,
                "wake_at": self.wake_at,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> RetryCursor:
        """The cursor in `text`; None, "" or anything unreadable gives an empty cursor."""
        return cls.from_json_with_warning(text)[0]

    @classmethod
    def from_json_with_warning(cls, text: str | None) -> tuple[RetryCursor, str | None]:
        """Like `from_json`, plus a warning for the sensor to log when `text` was unreadable."""
        if not text:
            return cls(), None
        try:
            return _parse(json.loads(text)), None
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            return cls(), (
                f"the retry sensor's cursor is unreadable ({exc}); starting from an empty cursor. "
                "Retries already launched are still deduplicated by run_key, but a give-up may "
                "be alerted again."
            )


def _parse(document: Any) -> RetryCursor:
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    version = document.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ValueError(
            f"cursor version {version!r}, this code reads versions {sorted(READABLE_VERSIONS)}"
        )
    handled = document.get("handled", {})
    if not isinstance(handled, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in handled.items()
    ):
        raise ValueError("'handled' must map run ids to strings")
    reported = document.get("reported", [])
    if not isinstance(reported, list) or not all(isinstance(r, str) for r in reported):
        raise ValueError("'reported' must be a list of run ids")
    storage_id = document.get("last_seen_storage_id", 0)
    if isinstance(storage_id, bool) or not isinstance(storage_id, int) or storage_id < 0:
        raise ValueError("'last_seen_storage_id' must be a non-negative integer")
    alerts = document.get("alerts", {})
    if not isinstance(alerts, dict) or not all(isinstance(k, str) for k in alerts):
        raise ValueError("'alerts' must map give-up run ids to pending alerts")
    full_read_at, wake_at = document.get("full_read_at", 0.0), document.get("wake_at")
    if not _is_time(full_read_at) or not (wake_at is None or _is_time(wake_at)):
        raise ValueError("'full_read_at' and 'wake_at' must be unix times")
    settings_key, open_chains = document.get("settings_key", ""), document.get("open_chains", False)
    if not isinstance(settings_key, str) or not isinstance(open_chains, bool):
        raise ValueError("'settings_key' must be a string and 'open_chains' a boolean")
    return RetryCursor(
        handled=handled,
        reported=frozenset(reported),
        last_seen_storage_id=storage_id,
        alerts={key: PendingAlert.from_dict(value) for key, value in alerts.items()},
        full_read_at=float(full_read_at),
        settings_key=settings_key,
        open_chains=open_chains,
        wake_at=None if wake_at is None else float(wake_at),
    )


def _is_time(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


# --- when a tick must read the instance in full ------------------------------------------------


def stale_reason(
    cursor: RetryCursor,
    *,
    high_water: int | None,
    now: float,
    settings_key: str,
    full_read_every_seconds: float,
) -> str | None:
    """Why the last full read cannot stand, before looking at what happened since; ``None``
    when only the events after ``cursor.last_seen_storage_id`` can tell.

    A full read costs queries over every asset; a tick whose event log holds nothing new (or only
    successes) would find what the last one found, so it keeps its decisions. Time-bound
    decisions (a backoff), a change of settings, a storage that cannot say where its event log
    ends, and a periodic full read (the safety net for an event committed out of id order, which
    PostgreSQL sequences allow) still force one.
    """
    if high_water is None:
        return "the event log storage cannot report its latest id"
    if cursor.last_seen_storage_id <= 0 or cursor.full_read_at <= 0:
        return "no full read on record in the cursor"
    if high_water < cursor.last_seen_storage_id:
        return "the event log's latest id went backwards (a wiped or replaced instance)"
    if cursor.settings_key != settings_key:
        return "the sensor's settings changed"
    if now - cursor.full_read_at >= full_read_every_seconds:
        return f"the periodic full read (every {full_read_every_seconds:.0f} s)"
    if cursor.wake_at is not None and now >= cursor.wake_at:
        return "a backoff ended"
    return None


@dataclass(frozen=True)
class RunEnds:
    """Runs that ended since the cursor's storage id (at most one of each kind is read)."""

    failed: str | None = None
    """A run that failed or was canceled."""
    ended: str | None = None
    """Any run that ended (read only while chains are open)."""


def run_ends_reason(cursor: RetryCursor, ends: RunEnds) -> str | None:
    """Why the runs that ended since the last tick need a full read, or ``None``.

    A new failure does, always. A success matters only while failure chains are open: it may
    heal one (a retry, a manual re-execution), or release one held back by a run in flight.
    """
    if ends.failed is not None:
        return f"run {ends.failed} failed or was canceled"
    if cursor.open_chains and ends.ended is not None:
        return f"run {ends.ended} ended while failure chains are open"
    return None
