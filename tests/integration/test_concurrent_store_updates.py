"""Concurrent runs recording invocations in one artifact store lose no update: two processes
hammer the same run index and the shared ``latest.json`` pointer, on a local folder (a lock)
and on S3 over HTTP (moto; conditional writes with If-Match / If-None-Match)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from orchestration.artifacts.store import (
    LATEST_KEY,
    InvocationRecord,
    open_store,
    read_run_index,
    record_invocation,
)

pytestmark = pytest.mark.integration

RUN_ID = "shared-run"
NEWER_BASE = 2_000_000_000.0  # every record of the "newer" writer is newer than the other's


def hammer(store_uri: str, name: str, count: int, base: float) -> None:
    """One process: ``count`` invocations of ``RUN_ID``, created at ``base + i``."""
    store = open_store(store_uri)
    for i in range(count):
        record = InvocationRecord(
            label=f"{name}-{i}",
            command="build",
            step_key="dbt_models",
            status="success",
            files=("run_results.json",),
            created_at=base + i,
        )
        record_invocation(store, RUN_ID, record)


def run_two_writers(store_uri: str, count: int) -> None:
    # spawn, not fork: the test process runs moto's server threads.
    context = multiprocessing.get_context("spawn")
    # The writer of older invocations writes twice as often, so it is usually still writing
    # after the newer one finished: a last-writer-wins pointer would then go backwards.
    workers = [
        context.Process(target=hammer, args=(store_uri, "newer", count, NEWER_BASE)),
        context.Process(target=hammer, args=(store_uri, "older", 2 * count, 0.0)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0, f"writer exited with {worker.exitcode}"


def assert_nothing_lost(store_uri: str, count: int) -> None:
    store = open_store(store_uri)
    labels = [i.label for i in read_run_index(store, RUN_ID).invocations]
    expected = {f"newer-{i}" for i in range(count)} | {f"older-{i}" for i in range(2 * count)}
    assert len(labels) == len(set(labels))
    missing = expected - set(labels)
    assert not missing, f"{len(missing)} of {len(expected)} index updates lost"
    latest = json.loads(store.get_bytes(LATEST_KEY))
    assert latest == {
        "run_id": RUN_ID,
        "invocation": f"newer-{count - 1}",
        "created_at": NEWER_BASE + count - 1,
    }


def test_two_processes_lose_no_update_in_a_local_store(tmp_path: Path) -> None:
    uri = str(tmp_path / "artifacts")
    run_two_writers(uri, count=150)
    assert_nothing_lost(uri, count=150)


def test_two_processes_lose_no_update_in_an_s3_store(s3_env: str) -> None:
    uri = f"s3://{s3_env}/dbt"
    run_two_writers(uri, count=40)
    assert_nothing_lost(uri, count=40)
