"""The retry sensor's cursor: round-trips, immutability, corrupt input, bounded growth."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.recovery.cursor import (
    RetryCursor,
    gave_up_marker,
    retry_run_key,
)

run_ids = st.text(min_size=1, max_size=40)
cursors = st.builds(
    RetryCursor,
    handled=st.dictionaries(run_ids, st.text(max_size=60), max_size=20),
    reported=st.frozensets(run_ids, max_size=20),
    last_seen_storage_id=st.integers(0, 2**62),
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
        '{"version": 2, "handled": {}}',
        '{"version": 1, "handled": {"run": 3}}',
        '{"version": 1, "reported": "run"}',
        '{"version": 1, "last_seen_storage_id": -1}',
        '{"version": 1, "last_seen_storage_id": true}',
    ],
    ids=[
        "not json",
        "not an object",
        "newer version",
        "non-string outcome",
        "reported not a list",
        "negative storage id",
        "boolean storage id",
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
        "version": 1,
        "handled": {"a": "1", "b": "2"},
        "reported": ["y", "z"],
        "last_seen_storage_id": 0,
    }
    assert " " not in cursor.to_json()


def test_the_retry_run_key_is_deterministic_per_root_and_attempt() -> None:
    assert retry_run_key("abc", 2) == retry_run_key("abc", 2) == "retry:abc:2"


def test_retry_run_keys_differ_between_attempts() -> None:
    assert retry_run_key("abc", 1) != retry_run_key("abc", 2)


def test_retry_run_keys_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        retry_run_key("abc", 0)


def test_the_give_up_marker_names_the_kind() -> None:
    assert gave_up_marker("give_up_deterministic") == "gave_up:give_up_deterministic"
