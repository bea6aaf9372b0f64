"""The retry sensor's cursor: which failed runs were handled and which give-ups were reported.

Dagster stores a sensor cursor as one string and hands it back on the next tick. Keeping what the
sensor already did in it means that a tick evaluated twice (overlapping ticks, a daemon restart
after a launch) neither launches a second retry for the same failed run nor alerts twice. Retries
are additionally launched with a deterministic `retry_run_key`, which Dagster deduplicates per
sensor: even a lost cursor cannot cause a duplicate launch, only a repeated alert.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

CURSOR_VERSION = 1
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


@dataclass(frozen=True)
class RetryCursor:
    """Immutable; the `with_*` methods and `pruned` return new cursors."""

    version: int = CURSOR_VERSION
    # run_id of a failed run → run_key of the retry launched for it, or gave_up_marker(kind)
    handled: Mapping[str, str] = field(default_factory=dict)
    # chain roots whose give-up was already alerted
    reported: frozenset[str] = frozenset()
    # optional high-water mark of the event log / run storage the sensor has looked at
    last_seen_storage_id: int = 0

    def __post_init__(self) -> None:
        # A read-only copy: a cursor handed to the next tick cannot be changed behind its back.
        object.__setattr__(self, "handled", MappingProxyType(dict(self.handled)))
        object.__setattr__(self, "reported", frozenset(self.reported))

    def with_handled(self, run_id: str, outcome: str) -> RetryCursor:
        return replace(self, handled={**self.handled, run_id: outcome})

    def with_reported(self, chain_root: str) -> RetryCursor:
        return replace(self, reported=self.reported | {chain_root})

    def with_last_seen_storage_id(self, storage_id: int) -> RetryCursor:
        """Advance the high-water mark; it never moves backwards."""
        return replace(self, last_seen_storage_id=max(self.last_seen_storage_id, storage_id))

    def pruned(self, keep_run_ids: Set[str]) -> RetryCursor:
        """Forget runs outside `keep_run_ids` (e.g. runs older than the sensor's lookback window).

        Bounds the cursor's size: without it, every failure ever seen stays in it.
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
            },
            separators=(",", ":"),
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
    if version != CURSOR_VERSION:
        raise ValueError(f"cursor version {version!r}, this code reads version {CURSOR_VERSION}")
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
    return RetryCursor(
        version=version,
        handled=handled,
        reported=frozenset(reported),
        last_seen_storage_id=storage_id,
    )
