"""Artifact keys cannot leave the store's prefix, whatever run id, label or location a user gives.

Run ids come from run config (``retry_from_run_id``), labels and locations from the CLI and
``retry_from_artifacts``; a key like ``../../etc`` must be refused before any file or S3 object
is touched — for the local store and for S3 alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.artifacts.store import (
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_key,
    find_run_results_keys,
    run_prefix,
    safe_key,
)
from orchestration.errors import ArtifactStoreError

ESCAPES = [
    "..",
    "../secrets",
    "runs/../../etc/passwd",
    "runs/./x",
    "a\\..\\b",
    "run id with spaces",
    "run\x00id",
    "run\nid",
    "%2e%2e",
    "\u2024\u2024",  # ONE DOT LEADER twice: looks like ".." to a person
    "~root",
    "$HOME",
]


class RecordingS3Client:
    """Stands in for boto3's client: records what would have been sent, sends nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.objects: dict[str, bytes] = {}

    def put_object(self, **kwargs: Any) -> None:
        self.calls.append(("put_object", kwargs))
        self.objects[kwargs["Key"]] = kwargs["Body"]

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get_object", kwargs))
        return {"Body": _Body(self.objects[kwargs["Key"]])}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


def test_plain_segments_join_into_one_key() -> None:
    assert safe_key("runs", "0a1b-2c3d", "dbt_models-1234", "run_results.json") == (
        "runs/0a1b-2c3d/dbt_models-1234/run_results.json"
    )
    assert safe_key("runs/abc/", "/index.json") == "runs/abc/index.json"  # slashes collapse


@pytest.mark.parametrize("segment", ESCAPES)
def test_a_segment_that_could_escape_or_confuse_is_refused(segment: str) -> None:
    with pytest.raises(ArtifactStoreError, match="cannot leave the store's prefix"):
        safe_key("runs", segment, "run_results.json")


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ArtifactStoreError, match="at least one segment"):
        safe_key("", "/")


@pytest.mark.parametrize("run_id", ["../other-run", "..", "a/../../b"])
def test_run_ids_and_labels_from_users_cannot_leave_runs(run_id: str) -> None:
    with pytest.raises(ArtifactStoreError):
        run_prefix(run_id)
    with pytest.raises(ArtifactStoreError):
        artifact_key("0a1b", run_id, "run_results.json")


# Hand-written from the rule: a key part is letters, digits, '.', '_' and '-', and not '.'/'..'.
KEY_CHARS = "abcxyzABCXYZ0189._-"
valid_parts = st.text(alphabet=KEY_CHARS, min_size=1, max_size=10).map(
    lambda part: part + "x" if part in {".", ".."} else part  # built valid, never rejected
)
# One segment may hold several parts and stray slashes ("runs/abc/", "/index.json").
valid_segments = st.lists(st.one_of(valid_parts, st.just("")), min_size=1, max_size=3).map("/".join)
bad_parts = st.one_of(
    st.sampled_from([".", ".."]),
    st.builds(
        lambda before, bad, after: before + bad + after,
        st.text(alphabet=KEY_CHARS, max_size=4),
        st.characters(
            blacklist_characters="/" + KEY_CHARS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "abcdefghijklmnopqrstuvwxyz0123456789"
        ),
        st.text(alphabet=KEY_CHARS, max_size=4),
    ),
)


@given(st.lists(valid_parts, min_size=1, max_size=4), st.data())
def test_a_key_of_allowed_parts_is_accepted_and_stays_inside_the_store_root(
    parts: list[str], data: st.DataObject
) -> None:
    # Split the parts over segments, with slashes around them, the way callers pass them.
    segments = [
        data.draw(st.sampled_from(["", "/"])) + part + data.draw(st.sampled_from(["", "/"]))
        for part in parts
    ]
    key = safe_key(*segments)
    assert key == "/".join(parts)
    root = Path("/srv/artifacts")
    resolved = (root / key).resolve()
    assert resolved == root / key  # nothing to resolve: no '..', no '.', no empty part
    assert resolved.is_relative_to(root)


@given(st.lists(valid_segments, max_size=4), bad_parts, valid_segments, st.data())
def test_one_bad_part_anywhere_refuses_the_whole_key(
    segments: list[str], bad: str, neighbour: str, data: st.DataObject
) -> None:
    # The bad part alone or inside a segment of good ones, at any position.
    bad_segment = data.draw(st.sampled_from([bad, f"{neighbour}/{bad}", f"{bad}/{neighbour}"]))
    segments.insert(data.draw(st.integers(0, len(segments))), bad_segment)
    with pytest.raises(ArtifactStoreError, match="cannot leave the store's prefix"):
        safe_key(*segments)


def test_the_local_store_writes_and_reads_nothing_outside_its_folder(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    outside = tmp_path / "secrets.txt"
    outside.write_text("do not touch")
    for key in ("../secrets.txt", "runs/../../secrets.txt"):
        with pytest.raises(ArtifactStoreError):
            store.put_bytes(key, b"overwritten")
        with pytest.raises(ArtifactStoreError):
            store.get_bytes(key)
        assert not store.exists("runs/x") and outside.read_text() == "do not touch"
    assert not (tmp_path / "artifacts").exists()


def test_the_s3_store_keeps_every_key_under_its_prefix_and_sends_nothing_for_a_bad_one() -> None:
    client = RecordingS3Client()
    store = S3ArtifactStore(client, "bucket", "team/dbt/")
    store.put_bytes("runs/abc/run_results.json", b"{}")
    assert client.calls[-1][1]["Key"] == "team/dbt/runs/abc/run_results.json"
    assert store.describe("runs/abc/x.json") == "s3://bucket/team/dbt/runs/abc/x.json"
    sent = len(client.calls)
    for key in ("../other-team/runs/abc/x.json", "runs/../../../x.json"):
        with pytest.raises(ArtifactStoreError):
            store.put_bytes(key, b"{}")
        with pytest.raises(ArtifactStoreError):
            store.get_bytes(key)
    assert len(client.calls) == sent


def test_a_tampered_run_index_cannot_point_outside_the_run(tmp_path: Path) -> None:
    """The index is data in the store: a label in it is user input like any other."""
    store = LocalArtifactStore(tmp_path / "artifacts")
    index = {
        "run_id": "abc",
        "invocations": [
            {"label": "../../../etc", "command": "build", "files": ["run_results.json"]}
        ],
    }
    store.put_bytes("runs/abc/index.json", json.dumps(index).encode())
    with pytest.raises(ArtifactStoreError, match="cannot leave the store's prefix"):
        find_run_results_keys(store, "abc")
