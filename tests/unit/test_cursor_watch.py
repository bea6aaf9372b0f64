"""When the retry sensor may keep its last decisions instead of reading every asset again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestration.recovery.cursor import RetryCursor, RunEnds, run_ends_reason, stale_reason

EVERY = 600.0


def watched(**fields) -> RetryCursor:
    """A cursor after a full read at t=1000 that began at event-log id 50."""
    cursor = RetryCursor().after_full_read(
        high_water=50, now=1000.0, settings_key="k", open_chains=False, wake_at=None
    )
    return replace(cursor, **fields)


def reason(cursor: RetryCursor, *, high_water: int | None = 60, now: float = 1100.0) -> str | None:
    return stale_reason(
        cursor, high_water=high_water, now=now, settings_key="k", full_read_every_seconds=EVERY
    )


def test_a_recent_full_read_with_the_same_settings_stands() -> None:
    assert reason(watched()) is None


@pytest.mark.parametrize(
    ("cursor", "high_water", "now", "expected"),
    [
        (RetryCursor(), 60, 1100.0, "no full read on record"),
        (watched(), None, 1100.0, "cannot report its latest id"),
        (watched(), 40, 1100.0, "went backwards"),
        (watched(settings_key="other"), 60, 1100.0, "settings changed"),
        (watched(), 60, 1000.0 + EVERY, "periodic full read"),
        (watched(wake_at=1100.0), 60, 1100.0, "a backoff ended"),
    ],
    ids=["empty cursor", "no high water", "backwards", "settings", "periodic", "backoff over"],
)
def test_what_forces_a_full_read(
    cursor: RetryCursor, high_water: int | None, now: float, expected: str
) -> None:
    found = reason(cursor, high_water=high_water, now=now)
    assert found is not None and expected in found


def test_a_backoff_still_running_does_not_force_a_read() -> None:
    assert reason(watched(wake_at=1101.0), now=1100.0) is None


def test_a_cursor_of_version_2_reads_in_full_on_its_first_tick() -> None:
    old = RetryCursor.from_json('{"version": 2, "handled": {}, "last_seen_storage_id": 9}')
    assert reason(old) == "no full read on record in the cursor"


def test_a_new_failure_always_forces_a_read() -> None:
    assert "run r1 failed" in (run_ends_reason(watched(), RunEnds(failed="r1")) or "")


def test_a_success_matters_only_while_chains_are_open() -> None:
    assert run_ends_reason(watched(), RunEnds(ended="r2")) is None
    found = run_ends_reason(watched(open_chains=True), RunEnds(ended="r2"))
    assert found is not None and "chains are open" in found


def test_nothing_ended_keeps_the_decisions() -> None:
    assert run_ends_reason(watched(open_chains=True), RunEnds()) is None


def test_the_watch_survives_a_json_round_trip() -> None:
    cursor = watched(open_chains=True, wake_at=1234.5)
    assert RetryCursor.from_json(cursor.to_json()) == cursor
