"""The warm run worker: one process that has imported Dagster, dagster-dbt and a code location's
definitions once, and forks a child for every run (``WarmRunLauncher`` starts and feeds it).

Why: Dagster's default launcher starts every run in a fresh interpreter, which imports Dagster and
dagster-dbt (about 2.2 s here) and builds the definitions from the manifest (about 1.5 s at 1,000
models) before the first step starts — a third of a whole recovery of a dozen models
(``benchmarks/RESULTS.md``, figure 9). A forked child starts with all of that in memory.

What keeps forking safe: before a fork this process has opened no instance, database, socket to
a server or thread of its own; it only loaded code and definitions (the garbage collector's
objects are frozen, so children share those pages). Each child restores the signal handlers it
inherited, opens its own instance from the launcher's ref and runs exactly the body of
``dagster api execute_run``; SIGTERM / SIGINT become Dagster's interrupt, as in any run worker.

A spare child: the fork and the child's opening of its instance (~0.2 s, most of it Dagster's
storages checking their schema against ~90 migration scripts) are done *before* the run
arrives. One child always waits, its instance open, reading the worker's pipe; a run is handed
to it, and the next spare is forked after the launcher has its answer. That next spare opens
its instance only once the run before it has ended, or as soon as another run arrives: opened
at once, its 0.2 s of CPU would be taken from the run that is just starting, on a machine with
few cores. A spare reads end of file when its worker exits or is replaced (stale code), and
then exits without running anything. A run whose instance ref is not the one the spare opened
(the launcher's instance changed) opens its own, as before. An idle spare holds no database
connection on SQLite; on PostgreSQL, one for its run storage and one for its event log, made
before the run arrives (pools ping a connection before use and recycle it hourly).

A warm run's dbt is warm too: this process starts the dbt fork server
(``orchestration.dbt.fork_server``, dbt imported once) before it loads the definitions, and its
children inherit the server's folder in their environment and its stdin pipe (the server's
life), nothing else of it.

Protocol, one JSON object per line on the socket whose descriptor ``--fd`` names:
``{"repository_origin": …, "instance_ref": …}`` once (this process answers ``{"ready": true,
"stamps": […], "dbt_fork_server": folder or null}``, the files its definitions came from with
their modification times and sizes, or ``{"error": …}``), then ``{"run_id": …,
"instance_ref": …}`` per run, answered ``{"pid": …}``. End of input ends this process and its
spare; running children go on.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


def loaded_source_files(root: Path) -> list[str]:
    """Source files of the loaded modules under ``root``: when one changes, the definitions in
    this process are stale (the launcher then starts a new worker)."""
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(root):
            files.add(str(Path(path).resolve()))
    return sorted(files)


def file_stamps(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    """What "unchanged" means for a watched file: the same modification time and size (a
    missing file is ``-1, -1``)."""
    stamps = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            stamps.append((path, -1, -1))
        else:
            stamps.append((path, stat.st_mtime_ns, stat.st_size))
    return stamps


def preload(repository_origin: str) -> list[tuple[str, int, int]]:
    """Load the code location's definitions and resolve its jobs (what each run would otherwise
    do); the stamps of the files they came from. The dbt files are stamped before loading, so a
    parse that rewrites the manifest meanwhile makes this worker stale rather than unnoticed."""
    import dagster._cli.api  # noqa: F401 - what each child runs, imported once here
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.origin import RepositoryPythonOrigin
    from dagster._serdes import deserialize_value

    origin = deserialize_value(repository_origin, RepositoryPythonOrigin)
    dbt_files = file_stamps(extra_watched_files())
    repository = ReconstructableRepository(origin.code_pointer, origin.container_image)
    # Resolving a job (its asset graph, its ops) is ~0.1 s at 1,000 assets; the definition
    # keeps resolved jobs, so a child starts with its job (or the base of its subset) built.
    repository.get_definition().get_all_jobs()
    gc.collect()
    gc.freeze()
    return file_stamps(loaded_source_files(Path(os.getcwd()).resolve())) + dbt_files


def extra_watched_files() -> list[str]:
    """Files the definitions were built from that are not Python modules: the dbt manifest and
    the project files a parse reads (a fresh run worker re-parses when those are newer)."""
    try:
        from orchestration.dbt.project import manifest_path, project_source_files
        from orchestration.settings import load_settings

        settings = load_settings()
    except Exception:  # noqa: BLE001 - another code location: its modules are watched
        return []
    files = [manifest_path(settings), *project_source_files(settings.dbt_project_dir)]
    return [str(path.resolve()) for path in files]


def start_dbt_fork_server() -> tuple[subprocess.Popen, Path] | None:
    """For our code location (unless ``ORCHESTRATION_DBT_FORK_SERVER=0``): start the dbt fork
    server (``orchestration.dbt.fork_server``) and name it in this process's environment, which
    every run forked from here inherits; the server's process (keep it: its stdin pipe is the
    server's life) and folder, or ``None``. It serves once its imports are done (~1.5 s);
    until then a run's dbt starts the ordinary way. It ends at end of its input, once this
    process and every child holding the pipe have exited."""
    try:
        from orchestration.dbt import fork_server
        from orchestration.dbt.project import real_dbt
        from orchestration.settings import load_settings

        if not load_settings().dbt_fork_server:
            return None
        server = fork_server.start(real_dbt())
    except Exception:  # noqa: BLE001 - another code location, or no dbt: plain dbt, as before
        return None
    os.environ[fork_server.FORK_SERVER_ENV] = str(server[1])
    return server


def open_instance(instance_ref: str) -> Any:
    from dagster._core.instance import DagsterInstance, InstanceRef
    from dagster._serdes import deserialize_value

    return DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef))


def open_connected(instance_ref: str) -> Any:
    """The instance, with a connection of its run storage and event log already made (on
    PostgreSQL each engine's first connection also asks the server about itself: ~10 ms)."""
    instance = open_instance(instance_ref)
    instance.get_runs(limit=1)
    instance.event_log_storage.get_maximum_record_id()
    return instance


def settle(read_fd: int, previous_run: int | None) -> None:
    """Wait until the run before this spare has ended (``previous_run``: a pipe its child
    holds open while it lives) or a run arrives on ``read_fd``, whichever comes first."""
    if previous_run is not None:
        select.select([read_fd, previous_run], [], [])
        os.close(previous_run)


def run_spare(read_fd: int, instance_ref: str | None, previous_run: int | None = None) -> None:
    """In a forked spare child: open the instance once the run before has ended (``settle``),
    wait for a run, run it, then leave without running the parent's cleanup. End of file on
    the pipe (no run) exits at once."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # dbt's subprocess must be waitable
        from dagster._cli.api import _execute_run_command_body
        from dagster._utils.interrupts import capture_interrupts

        from orchestration.tags import RUN_WORKER_PID_TAG

        try:
            settle(read_fd, previous_run)
        except KeyboardInterrupt:  # SIGTERM / SIGINT before any run: nothing to say
            code = 0
            return
        instance = None
        with contextlib.suppress(Exception):  # opened again below, where a failure is reported
            instance = open_connected(instance_ref) if instance_ref else None
        try:
            with os.fdopen(read_fd) as pipe:
                line = pipe.readline()
        except KeyboardInterrupt:  # SIGTERM / SIGINT before any run: nothing to say
            line = ""
        if not line:
            code = 0
            return
        request = json.loads(line)
        if instance is None or request["instance_ref"] != instance_ref:
            if instance is not None:
                instance.dispose()
            instance = open_instance(request["instance_ref"])
        with capture_interrupts(), instance:
            # Before the run starts: terminate and the health check find the process by it.
            instance.add_run_tags(request["run_id"], {RUN_WORKER_PID_TAG: str(os.getpid())})
            code = _execute_run_command_body(
                request["run_id"], instance, lambda _event: None, set_exit_code_on_failure=False
            )
    except BaseException:  # noqa: BLE001 - the run's own failure is in its event log already
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@dataclass
class Spare:
    """A forked spare child: its pid, the pipe to hand it a run, and the read end of a pipe
    whose write end only the child holds (end of file there: the child has exited)."""

    pid: int
    requests: int
    alive: int


def fork_spare(
    inherited: Sequence[Any], instance_ref: str | None, previous: Spare | None = None
) -> Spare:
    """Fork a spare child (module docstring). With ``previous`` (the spare that was just
    handed a run), the new one opens its instance only after that run has ended."""
    read_fd, write_fd = os.pipe()
    alive_read, alive_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_fd)
        os.close(alive_read)
        for stream in inherited:  # the launcher's socket is the worker's alone
            stream.close()
        run_spare(read_fd, instance_ref, previous.alive if previous else None)
    os.close(read_fd)
    os.close(alive_write)
    if previous is not None:
        os.close(previous.alive)
    return Spare(pid, write_fd, alive_read)


def reap_children(_signum: int = 0, _frame: Any = None) -> None:
    """Collect finished children (no zombies while this process waits for the next run)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def answer(writer: TextIO, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message) + "\n")
    writer.flush()


def serve(sock: socket.socket) -> None:
    reader, writer = sock.makefile("r"), sock.makefile("w")
    hello = json.loads(reader.readline() or "{}")
    dbt_fork_server = start_dbt_fork_server()  # imports dbt while this process loads
    folder = str(dbt_fork_server[1]) if dbt_fork_server else None
    try:
        stamps = preload(hello["repository_origin"])
    except Exception:  # noqa: BLE001 - the launcher falls back to the code server and says why
        answer(writer, {"error": traceback.format_exc(limit=5)})
        return
    ready = {"ready": True, "stamps": stamps, "pid": os.getpid()}
    answer(writer, ready | {"dbt_fork_server": folder})
    signal.signal(signal.SIGCHLD, reap_children)
    inherited = (reader, writer, sock)
    spare = fork_spare(inherited, hello.get("instance_ref"))
    for line in reader:
        request = json.loads(line)
        spare = hand_over(spare, request, inherited)
        answer(writer, {"pid": spare.pid})
        spare = fork_spare(inherited, request["instance_ref"], previous=spare)
    os.close(spare.requests)  # the spare reads end of file and exits
    os.close(spare.alive)


def hand_over(spare: Spare, request: dict[str, Any], inherited: Sequence[Any]) -> Spare:
    """Give the run to the spare child; the child that has it (a new one, if the spare has
    died)."""
    message = (json.dumps(request) + "\n").encode()
    try:
        os.write(spare.requests, message)
    except OSError:  # no reader: the spare was killed
        os.close(spare.requests)
        os.close(spare.alive)
        spare = fork_spare(inherited, None)
        os.write(spare.requests, message)
    os.close(spare.requests)
    return spare


def main() -> None:
    from dagster._utils.interrupts import setup_interrupt_handlers

    parser = argparse.ArgumentParser(prog="python -m orchestration.instance.warm_worker")
    parser.add_argument("--fd", type=int, required=True, help="the launcher's socket")
    args = parser.parse_args()
    setup_interrupt_handlers()  # SIGTERM acts as SIGINT, here and in every child
    # KeyboardInterrupt: SIGTERM or SIGINT, the daemon is stopping.
    with socket.socket(fileno=args.fd) as sock, contextlib.suppress(KeyboardInterrupt):
        serve(sock)


if __name__ == "__main__":
    main()
