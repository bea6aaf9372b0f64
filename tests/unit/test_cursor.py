"""The retry sensor's cursor: round-trips, immutability, corrupt input, bounded growth."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.recovery.cursor import (
    PendingAlert,
    RetryCursor,
    alert_retry_delay,
    gave_up_marker,
    retry_run_key,
)

run_ids = st.text(min_size=1, max_size=40)
pending_alerts = st.builds(
    PendingAlert,
    payload=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
    failures=st.integers(0, 10),
    next_attempt_at=st.floats(0, 2e9, allow_nan=False),
)
cursors = st.builds(
    RetryCursor,
    handled=st.dictionaries(run_ids, st.text(max_size=60), max_size=20),
    reported=st.frozensets(run_ids, max_size=20),
    last_seen_storage_id=st.integers(0, 2**62),
    alerts=st.dictionaries(run_ids, pending_alerts, max_size=5),
    full_read_at=st.floats(0, 2e9, allow_nan=False),
    settings_key=st.text(max_size=16),
    open_chains=st.booleans(),
    wake_at=st.none() | st.floats(0, 2e9, allow_nan=False),
)


@given(cursors)
def test_a_cursor_survives_a_json_round_trip(cursor: RetryCursor) -> None:
    assert RetryCursor.from_json(cursor.to_json()) == cursor


@given(cursors)
def test_the_json_is_the_same_for_equal_cursors(cursor: RetryCursor) -> None:
    # Dagster compares cursor strings to decide whether to store a new one.
    assert RetryCursor.from_json(cursor.to_json()).to_json() == cursor.to_json()


@pytest.mark.parametrize("text", [None, ""])
def test_no_cursor_yet_is_an_empty_cursor_without_a_warning(text: str | None) -> None:
    assert RetryCursor.from_json_with_warning(text) == (RetryCursor(), None)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"version": 4, "handled": {}}',
        '{"version": 3, "wake_at": "soon"}',
        '{"version": 1, "handled": {"run": 3}}',
        '{"version": 1, "reported": "run"}',
        '{"version": 1, "last_seen_storage_id": -1}',
        '{"version": 1, "last_seen_storage_id": true}',
        '{"version": 2, "alerts": {"run": {"failures": 1}}}',
        '{"version": 2, "alerts": {"run": {"payload": {}, "failures": -1}}}',
    ],
    ids=[
        "not json",
        "not an object",
        "newer version",
        "wake_at not a time",
        "non-string outcome",
        "reported not a list",
        "negative storage id",
        "boolean storage id",
        "pending alert without payload",
        "pending alert with negative failures",
    ],
)
def test_a_corrupt_cursor_becomes_empty_with_a_warning(text: str) -> None:
    cursor, warning = RetryCursor.from_json_with_warning(text)
    assert cursor == RetryCursor()
    assert warning is not None and "starting from an empty cursor" in warning


def test_from_json_never_raises_on_a_corrupt_cursor() -> None:
    assert RetryCursor.from_json("{truncated") == RetryCursor()


def test_with_handled_returns_a_new_cursor_and_leaves_the_old_one_alone() -> None:
    before = RetryCursor()
    after = before.with_handled("run-1", retry_run_key("run-1", 1))
    assert (dict(before.handled), dict(after.handled)) == ({}, {"run-1": "retry:run-1:1"})


def test_with_reported_returns_a_new_cursor_and_leaves_the_old_one_alone() -> None:
    before = RetryCursor()
    after = before.with_reported("root-1")
    assert (before.reported, after.reported) == (frozenset(), frozenset({"root-1"}))


def test_the_handled_mapping_cannot_be_changed_in_place() -> None:
    cursor = RetryCursor(handled={"run-1": "retry:run-1:1"})
    with pytest.raises(TypeError):
        cursor.handled["run-2"] = "x"  # type: ignore[index]


def test_a_cursor_does_not_share_the_dict_it_was_built_from() -> None:
    source = {"run-1": "retry:run-1:1"}
    cursor = RetryCursor(handled=source)
    source["run-2"] = "x"
    assert dict(cursor.handled) == {"run-1": "retry:run-1:1"}


def test_the_storage_high_water_mark_never_moves_backwards() -> None:
    cursor = RetryCursor().with_last_seen_storage_id(50).with_last_seen_storage_id(10)
    assert cursor.last_seen_storage_id == 50


def test_pruning_keeps_only_the_given_runs() -> None:
    cursor = (
        RetryCursor()
        .with_handled("old", gave_up_marker("give_up_budget"))
        .with_handled("new", retry_run_key("new", 1))
        .with_reported("old")
        .with_reported("new")
    )
    pruned = cursor.pruned({"new"})
    assert (dict(pruned.handled), pruned.reported) == (
        {"new": "retry:new:1"},
        frozenset({"new"}),
    )


def test_pruning_keeps_the_storage_high_water_mark() -> None:
    assert RetryCursor(last_seen_storage_id=7).pruned(set()).last_seen_storage_id == 7


def test_the_json_is_compact_and_sorted() -> None:
    cursor = RetryCursor(handled={"b": "2", "a": "1"}, reported=frozenset({"z", "y"}))
    assert json.loads(cursor.to_json()) == {
        "version": 3,
        "handled": {"a": "1", "b": "2"},
        "reported": ["y", "z"],
        "last_seen_storage_id": 0,
        "alerts": {},
        "full_read_at": 0.0,
        "settings_key": "",
        "open_chains": False,
        "wake_at": None,
    }
    assert " " not in cursor.to_json()


def test_the_retry_run_key_names_the_root_and_the_attempt() -> None:
    assert retry_run_key("abc", 2) == "retry:abc:2"
    assert retry_run_key("0a1b-2c3d", 1) == "retry:0a1b-2c3d:1"


def test_retry_run_keys_differ_between_attempts() -> None:
    assert retry_run_key("abc", 1) != retry_run_key("abc", 2)


def test_retry_run_keys_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        retry_run_key("abc", 0)


def test_the_give_up_marker_names_the_kind() -> None:
    assert gave_up_marker("give_up_deterministic") == "gave_up:give_up_deterministic"


POLICY = {"max_deliveries": 3, "base_seconds": 30.0, "max_seconds": 45.0}


def test_a_version_1_cursor_is_read_with_an_empty_outbox() -> None:
    text = '{"version":1,"handled":{"r1":"gave_up:budget"},"reported":["r1"]}'
    cursor, warning = RetryCursor.from_json_with_warning(text)
    assert warning is None
    assert (dict(cursor.handled), cursor.reported, dict(cursor.alerts)) == (
        {"r1": "gave_up:budget"},
        frozenset({"r1"}),
        {},
    )


def test_a_queued_alert_is_due_at_once_and_queued_only_once_per_give_up() -> None:
    cursor = RetryCursor().with_alert("r1", {"title": "first"}, now=100.0)
    again = cursor.with_alert("r1", {"title": "second"}, now=200.0)
    assert again.alerts["r1"] == PendingAlert({"title": "first"}, 0, 100.0)
    assert (cursor.due_alerts(99.0), cursor.due_alerts(100.0)) == ([], ["r1"])


def test_a_delivered_alert_leaves_the_outbox_and_is_never_queued_again() -> None:
    cursor = RetryCursor().with_alert("r1", {}, now=0.0).with_alert_delivered("r1")
    assert (dict(cursor.alerts), cursor.reported) == ({}, frozenset({"r1"}))
    assert dict(cursor.with_alert("r1", {}, now=1.0).alerts) == {}


def test_failed_deliveries_back_off_then_the_alert_is_dropped_after_the_last_one() -> None:
    cursor = RetryCursor().with_alert("r1", {}, now=0.0)
    cursor, dropped = cursor.with_alert_failed("r1", now=10.0, **POLICY)
    assert (dropped, cursor.alerts["r1"].failures, cursor.alerts["r1"].next_attempt_at) == (
        False,
        1,
        40.0,  # 10 + 30
    )
    cursor, dropped = cursor.with_alert_failed("r1", now=50.0, **POLICY)
    assert (dropped, cursor.alerts["r1"].next_attempt_at) == (False, 95.0)  # 60 s, capped at 45
    cursor, dropped = cursor.with_alert_failed("r1", now=100.0, **POLICY)
    assert dropped and dict(cursor.alerts) == {} and "r1" in cursor.reported


def test_pruning_keeps_undelivered_alerts() -> None:
    cursor = RetryCursor().with_alert("old-run", {"title": "t"}, now=0.0)
    assert set(cursor.pruned(set()).alerts) == {"old-run"}


def test_alert_retry_delays_double_up_to_the_cap() -> None:
    delays = [alert_retry_delay(n, base_seconds=30, max_seconds=600) for n in range(1, 7)]
    assert delays == [30, 60, 120, 240, 480, 600]
