"""Real ``dagster-webserver`` and ``dagster-daemon`` processes on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorTick, TickStatus

from orchestration.instance.config import default_instance_yaml
from orchestration.settings import REPO_ROOT
from tests.conftest import Pipeline, free_port

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_SECONDS = 120


@dataclass
class DagsterServices:
    url: str
    pipeline: Pipeline
    processes: list[subprocess.Popen]
    log_dir: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_for_run(self, run_id: str, timeout_seconds: float = 240) -> str:
        """Poll the run's status through GraphQL until it is finished."""
        deadline = time.monotonic() + timeout_seconds
        status = "UNKNOWN"
        while time.monotonic() < deadline:
            data = self.graphql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                {"id": run_id},
            )
            status = data["runOrError"].get("status", "UNKNOWN")
            if status in {"SUCCESS", "FAILURE", "CANCELED"}:
                return status
            time.sleep(1)
        raise AssertionError(
            f"run {run_id} still {status} after {timeout_seconds}s; logs in {self.log_dir}"
        )

    def wait_for_sensor_tick(
        self, sensor_name: str, *, started_after: float, timeout_seconds: float = 120
    ) -> InstigatorTick:
        """The first tick of ``sensor_name`` the daemon started after ``started_after`` (a
        Unix time) and finished, read from the instance's tick storage (no sleeping in the
        hope that the daemon has ticked)."""
        deadline = time.monotonic() + timeout_seconds
        with self.pipeline.instance() as instance:
            while time.monotonic() < deadline:
                states = [
                    state
                    for state in instance.all_instigator_state(
                        instigator_type=InstigatorType.SENSOR
                    )
                    if state.instigator_name == sensor_name
                ]
                for state in states:
                    ticks = instance.get_ticks(
                        state.instigator_origin_id,
                        state.selector_id,
                        after=started_after,
                        statuses=[TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE],
                    )
                    if ticks:
                        return min(ticks, key=lambda tick: tick.timestamp)
                time.sleep(0.5)
        raise AssertionError(
            f"no finished tick of {sensor_name} after {started_after} within "
            f"{timeout_seconds}s; logs in {self.log_dir}"
        )


def _wait_for_webserver(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                pass
            # the code location must be loaded too
            body = json.dumps(
                {
                    "query": "{ workspaceOrError { ... on Workspace { locationEntries { "
                    "locationOrLoadError { __typename } } } } }"
                }
            ).encode()
            request = urllib.request.Request(
                f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                data = json.loads(response.read())["data"]["workspaceOrError"]
            entries = data.get("locationEntries", [])
            kinds = [
                e["locationOrLoadError"]["__typename"] for e in entries if e["locationOrLoadError"]
            ]
            if "PythonError" in kinds:
                raise RuntimeError(f"code location failed to load; see {log}")
            if kinds and all(k == "RepositoryLocation" for k in kinds):
                return
        except (OSError, KeyError):
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster-webserver not ready after {STARTUP_TIMEOUT_SECONDS}s: {log}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def start_services(pipeline: Pipeline) -> Iterator[DagsterServices]:
    """Webserver + daemon over ``pipeline``'s environment (os.environ at call time)."""
    port = free_port()
    # The instance `make dev` writes (its queue, its event log), with telemetry off.
    (pipeline.dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n" + default_instance_yaml(pipeline.dagster_home)
    )
    # Create the storage schema once, here: the webserver, the daemon and the code server
    # starting together on an empty DAGSTER_HOME race to migrate it (two alembic heads).
    with pipeline.instance() as instance:
        instance.get_runs(limit=1)
        instance.event_log_storage.get_asset_records([])
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(pipeline.dagster_home),
        "PYTHONUNBUFFERED": "1",
        # The UI tests make runs fail through injected faults (off by default).
        "ORCHESTRATION_FAULTS_ENABLED": "1",
    }
    log_dir = pipeline.root / "service_logs"
    log_dir.mkdir(exist_ok=True)
    processes: list[subprocess.Popen] = []
    try:
        web_log = log_dir / "webserver.log"
        webserver = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=web_log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(webserver)
        daemon_log = log_dir / "daemon.log"
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=env,
            stdout=daemon_log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(daemon)
        url = f"http://127.0.0.1:{port}"
        _wait_for_webserver(url, webserver, web_log)
        yield DagsterServices(url=url, pipeline=pipeline, processes=processes, log_dir=log_dir)
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture
def dagster_services(pipeline: Pipeline) -> Iterator[DagsterServices]:
    """Webserver + daemon over the ``pipeline`` fixture's environment. Set env vars (e.g. a
    short sensor interval) with monkeypatch before requesting this fixture."""
    with start_services(pipeline) as services:
        yield services
