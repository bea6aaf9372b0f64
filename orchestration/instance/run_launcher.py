"""``WarmRunLauncher``: Dagster's default launcher, except that a run of a code location on this
machine starts as a fork of a warm worker (``orchestration.instance.warm_worker``) that has
already imported Dagster, dagster-dbt and the definitions, instead of a fresh interpreter.

The embedded instance (``orchestration.instance.config``) uses it; nothing else changes for a
run: the same body of ``dagster api execute_run`` executes it, in its own process, writing the
same events. What it saves and costs, measured: ``benchmarks/RESULTS.md``, figure 9.

- **Stale code is never run.** The worker reports the files its definitions came from: the
  Python modules it loaded from the code location's folder, the dbt manifest and the dbt
  project's files (a fresh run worker re-parses when those are newer than the manifest). When
  any of them changed since, the next launch starts a new worker first.
- **Anything unusual goes the default way**, through the code location's server: a code
  location in another Python environment or a container, or a worker that failed to start
  (the run's log says why).
- **Terminate** marks the run canceling and sends SIGTERM to its process, which Dagster turns
  into its interrupt (the run ends CANCELED, dbt is stopped), as a container launcher does.
- **A dead worker is seen**: with run monitoring on (``deploy/dagster.yaml``), a run whose
  process died is marked FAILURE at the next check, which ``DefaultRunLauncher`` cannot do.
- Loading a worker never holds up a launch: the first run after the daemon starts, or after a
  change, goes through the code server (as with Dagster's launcher, its log says why) while the
  worker loads in the background; the runs after it start warm. The worker holds one copy of
  the definitions in memory (224 MB resident at 1,000 models); children share its pages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dagster import DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import serialize_value

from orchestration.dbt.fork_server import is_serving
from orchestration.instance.warm_worker import file_stamps
from orchestration.tags import RUN_WORKER_PID_TAG

WORKER_MODULE = "orchestration.instance.warm_worker"
WORKER_READY_TIMEOUT_SECONDS = 900
"""Loading definitions may include a ``dbt parse`` of a stale project, as in a fresh worker
(in the background: runs meanwhile go through the code server)."""
WORKER_ANSWER_TIMEOUT_SECONDS = 30
FORK_SERVER_WAIT_SECONDS = 60


class WarmWorkerError(Exception):
    """The warm worker could not start or answer: the run goes through the code server."""


def working_directory(origin: RepositoryPythonOrigin) -> str | None:
    return getattr(origin.code_pointer, "working_directory", None)


class WarmWorker:
    """One warm worker process, loaded with one code location, and the socket to it."""

    def __init__(self, origin: RepositoryPythonOrigin, instance_ref: str | None = None) -> None:
        """``instance_ref``: the instance its spare child opens before a run arrives."""
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [origin.executable_path, "-m", WORKER_MODULE, "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                cwd=working_directory(origin),
            )
        finally:
            theirs.close()
        self._socket = ours
        self._reader = ours.makefile("r")
        self._writer = ours.makefile("w")
        try:
            reply = self._ask(
                {"repository_origin": serialize_value(origin), "instance_ref": instance_ref},
                WORKER_READY_TIMEOUT_SECONDS,
            )
            if not reply.get("ready"):
                raise WarmWorkerError(reply.get("error", "the warm worker did not start"))
        except BaseException:
            self.process.kill()
            self.close()
            raise
        self.stamps = [tuple(stamp) for stamp in reply["stamps"]]
        # The folder of the worker's dbt fork server (orchestration.dbt.fork_server), if any.
        folder = reply.get("dbt_fork_server")
        self.dbt_fork_server = Path(folder) if folder else None

    def _ask(self, message: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        self._socket.settimeout(timeout_seconds)
        try:
            self._writer.write(json.dumps(message) + "\n")
            self._writer.flush()
            line = self._reader.readline()
        except OSError as error:  # timeout, or the worker is gone
            raise WarmWorkerError(f"the warm worker did not answer: {error}") from error
        if not line:
            raise WarmWorkerError(f"the warm worker exited (code {self.process.poll()})")
        return json.loads(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_current(self) -> bool:
        """Alive, and none of the files its definitions came from changed."""
        paths = [path for path, _mtime, _size in self.stamps]
        return self.process.poll() is None and file_stamps(paths) == self.stamps

    def start(self, run_id: str, instance_ref: str) -> int:
        """Fork a child that executes ``run_id``; its pid."""
        reply = self._ask(
            {"run_id": run_id, "instance_ref": instance_ref}, WORKER_ANSWER_TIMEOUT_SECONDS
        )
        return int(reply["pid"])

    def close(self) -> None:
        """End of input ends the worker; children it started run on."""
        for stream in (self._writer, self._reader, self._socket):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def is_warm_child(pid: int) -> bool:
    """Whether ``pid`` is still a process forked by a warm worker (not a reused pid)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc").is_dir():  # no procfs: trust the tag
        return True
    try:
        return WORKER_MODULE.encode() in cmdline.read_bytes()
    except OSError:
        return False


class WarmRunLauncher(DefaultRunLauncher):
    """Configured in ``dagster.yaml`` as ``run_launcher: {module:
    orchestration.instance.run_launcher, class: WarmRunLauncher}``; no options."""

    def __init__(self, inst_data: Any = None) -> None:
        super().__init__(inst_data=inst_data)
        self._workers: dict[str, WarmWorker] = {}
        self._loading: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if not self._warm_can_run(origin):
            super().launch_run(context)
            return
        assert isinstance(origin, JobPythonOrigin)
        worker, why_not = self._ready_worker(origin.repository_origin)
        pid = None
        if worker is not None:
            try:
                pid = worker.start(run.run_id, serialize_value(self._instance.get_ref()))
            except WarmWorkerError as error:
                self._discard(worker)
                why_not = str(error)
        if pid is None:
            self._instance.report_engine_event(
                f"This run starts in a new process through the code server: {why_not}",
                run,
                cls=self.__class__,
            )
            super().launch_run(context)
            return
        assert worker is not None
        self._instance.report_engine_event(
            f"Started in a warm run worker (pid {pid}, forked from {worker.pid}, definitions "
            "already loaded).",
            run,
            cls=self.__class__,
        )
        self._run_ids.add(run.run_id)

    @staticmethod
    def _warm_can_run(origin: Any) -> bool:
        """A plain Python code location in this interpreter (not a container, not another
        virtual environment)."""
        if not isinstance(origin, JobPythonOrigin):
            return False
        repository = origin.repository_origin
        return (
            repository.container_image is None
            and not repository.container_context
            and os.path.realpath(repository.executable_path) == os.path.realpath(sys.executable)
        )

    def _ready_worker(self, origin: RepositoryPythonOrigin) -> tuple[WarmWorker | None, str]:
        """The loaded, current worker for ``origin``, or why there is none. Loading one never
        holds up a launch: it happens in the background, and until it is done runs go the
        default way (no slower than Dagster's own launcher)."""
        key = serialize_value(origin)
        with self._lock:
            worker = self._workers.get(key)
            if worker is not None and worker.is_current():
                return worker, ""
            if worker is not None:
                self._workers.pop(key).close()
                why = "the warm run worker is reloading (code or dbt project changed, or it exited)"
            else:
                why = "the warm run worker is loading (the first run since the daemon started)"
            loader = self._loading.get(key)
            if loader is None or not loader.is_alive():
                loader = threading.Thread(
                    target=self._load, args=(key, origin), name="warm-run-worker", daemon=True
                )
                self._loading[key] = loader
                loader.start()
            return None, why

    def _load(self, key: str, origin: RepositoryPythonOrigin) -> None:
        instance_ref = serialize_value(self._instance.get_ref()) if self.has_instance else None
        try:
            worker = WarmWorker(origin, instance_ref)
        except WarmWorkerError as error:
            logging.getLogger(__name__).warning(f"The warm run worker did not load: {error}")
            return
        with self._lock:
            self._workers[key] = worker

    def _discard(self, worker: WarmWorker) -> None:
        with self._lock:
            for key, known in list(self._workers.items()):
                if known is worker:
                    self._workers.pop(key)
        worker.close()

    def warm(self, origin: RepositoryPythonOrigin) -> int:
        """Load the worker for ``origin`` now and wait for it and its dbt fork server; its pid
        (benchmarks and tests: a daemon that has launched a run before holds a loaded
        worker, whose fork server has long finished its imports)."""
        worker, _ = self._ready_worker(origin)
        if worker is not None:
            return worker.pid
        self._loading[serialize_value(origin)].join(WORKER_READY_TIMEOUT_SECONDS)
        worker, why_not = self._ready_worker(origin)
        if worker is None:
            raise WarmWorkerError(why_not)
        deadline = time.monotonic() + FORK_SERVER_WAIT_SECONDS
        while worker.dbt_fork_server is not None and time.monotonic() < deadline:
            if is_serving(worker.dbt_fork_server):
                break
            time.sleep(0.05)
        return worker.pid

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or run.is_finished or RUN_WORKER_PID_TAG not in run.tags:
            return super().terminate(run_id)
        pid = int(run.tags[RUN_WORKER_PID_TAG])
        self._instance.report_run_canceling(run)
        if not is_warm_child(pid):
            self._instance.report_engine_event(
                f"Run worker process {pid} is gone; nothing to terminate.", run, cls=self.__class__
            )
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """For run monitoring: a warm run whose process is gone (killed, out of memory) is
        reported FAILED, so the daemon ends it and the retry sensor can recover it. A run
        started through the code server is not checked, as with ``DefaultRunLauncher``."""
        pid = run.tags.get(RUN_WORKER_PID_TAG)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not a warm run: not checked")
        if is_warm_child(int(pid)):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")

    def dispose(self) -> None:
        with self._lock:
            for worker in self._workers.values():
                worker.close()
            self._workers.clear()
