"""A dbt fork server: one process that has imported dbt-core and the installed adapters once,
and forks a child for every dbt command a warm run asks for, instead of a fresh interpreter.

Why: a ``dbt build`` spends 1.3–2 s importing dbt, its adapter and its tasks before it reads
the project (``benchmarks/RESULTS.md``, figure 9). A recovery of a dozen models takes
about 9 s in dbt alone, so that start-up is a large part of what Dagster adds on top of dbt.

How a run uses it: the warm run worker (``orchestration.instance.warm_worker``) starts this
server next to itself and puts ``FORK_SERVER_ENV`` (this server's folder) in its runs'
environment. ``orchestration.dbt.project.dbt_executable`` then returns the folder's ``dbt``
script, a client that hands its argv, environment, working directory and standard streams
(the descriptors themselves, over a Unix socket) to the server. The server forks; the child
takes those streams, that folder and that environment, and runs dbt's own command line
(``dbt.cli.main.cli``) — what the ``dbt`` executable runs. To dagster-dbt it is the same
process: the same JSON lines on the same pipe, the same exit code; SIGINT and SIGTERM to the
client reach dbt (dbt cancels its queries), and a client killed outright takes its dbt with it.

What it keeps from a fresh ``dbt``: only imported code. The server has never run a dbt command:
each child reads the project, profiles and partial-parse state itself. ``dbt deps`` and
``dbt init`` always run the ordinary way (the package hub address is read at import time,
``init`` asks questions). When the server is not there (not started yet, or gone), the client
runs the ordinary ``dbt`` in its place. A server that finds a thread running after its imports
(forking would copy a lock someone holds) does not serve. After upgrading dbt or an adapter,
restart the daemon (as for any long-lived Dagster process); a changed project needs nothing.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import pkgutil
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FORK_SERVER_ENV = "ORCHESTRATION_DBT_FORK_SERVER_DIR"
"""Set by the warm worker for its runs: the server's folder (its socket and its ``dbt`` client
script). Unset: plain ``dbt``. (``ORCHESTRATION_DBT_FORK_SERVER=0`` turns the server off.)"""
SOCKET_NAME = "socket"
CLIENT_NAME = "dbt"
SERVED_LOG_NAME = "served.jsonl"
NOT_SERVED_COMMANDS = frozenset({"deps", "init"})
STREAMS = (0, 1, 2)
# What a build imports after ``dbt.cli.main`` (measured with sys.modules before and after).
PRELOADED_MODULES = (
    "dbt.task.build",
    "dbt.task.list",
    "dbt.task.retry",
    "dbt.compilation",
    "dbt.parser.manifest",
    "dbt.parser.sql",
    "dbt.graph.thread_pool",
    "dbt_common.clients.agate_helper",
    "multiprocessing.dummy",
)


# --- the client: the ``dbt`` a warm run executes ---------------------------------------------


def client_main(args: Sequence[str], real_dbt: str) -> int:
    """Run ``dbt <args>`` in the server named by ``FORK_SERVER_ENV``, or ``real_dbt`` in this
    process's place when it cannot; dbt's exit code."""
    folder = os.environ.get(FORK_SERVER_ENV)
    served = bool(folder) and not NOT_SERVED_COMMANDS.intersection(args[:1])
    connection = _connect(Path(folder) / SOCKET_NAME) if served else None
    if connection is None:
        os.execv(real_dbt, [real_dbt, *args])
    with connection, connection.makefile("rb") as replies:
        request = {"args": list(args), "env": dict(os.environ), "cwd": os.getcwd()}
        connection.sendmsg(
            [json.dumps(request).encode() + b"\n"],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", STREAMS))],
        )
        started = replies.readline()
        if not started:
            print("dbt's fork server ended before starting dbt", file=sys.stderr)
            return 1
        pid = json.loads(started)["pid"]
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda number, _frame: _forward(pid, number))
        ended = replies.readline()
    if not ended:
        print("dbt's fork server ended before dbt did", file=sys.stderr)
        return 1
    return int(json.loads(ended)["exit_code"])


def is_serving(folder: Path) -> bool:
    """Whether the server of ``folder`` accepts requests (its imports are done)."""
    connection = _connect(folder / SOCKET_NAME)
    if connection is None:
        return False
    connection.close()
    return True


def _connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:  # not listening yet, or gone: plain dbt
        client.close()
        return None
    return client


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def exit_like(exit_code: int) -> None:
    """Leave as dbt did: its exit code, or killed by the same signal."""
    if exit_code < 0:
        signal.signal(-exit_code, signal.SIG_DFL)
        os.kill(os.getpid(), -exit_code)
    sys.exit(exit_code)


def write_client(folder: Path, real_dbt: str) -> Path:
    """The ``dbt`` script of this server: what ``dbt_executable`` returns to a warm run.

    It loads this file by path, with Python's ``-S`` (no site-packages): the client needs only
    the standard library, starts in ~10 ms, and works whatever the working directory."""
    script = folder / CLIENT_NAME
    script.write_text(
        f"#!{sys.executable} -S\n"
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dbt_fork_client', {__file__!r})\n"
        "client = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(client)\n"
        f"client.exit_like(client.client_main(sys.argv[1:], {real_dbt!r}))\n"
    )
    script.chmod(0o700)
    return script


# --- the server ------------------------------------------------------------------------------


def preload() -> None:
    """Import dbt, its build tasks and every installed adapter."""
    importlib.import_module("dbt.cli.main")
    for name in PRELOADED_MODULES:
        with contextlib.suppress(ImportError):  # moved in another dbt version: imported later
            importlib.import_module(name)
    import dbt.adapters

    for module in pkgutil.iter_modules(dbt.adapters.__path__):
        # An adapter plugin ships its macros as dbt.include.<name>.
        if importlib.util.find_spec(f"dbt.include.{module.name}") is None:
            continue
        with contextlib.suppress(Exception):  # a broken adapter fails in dbt, as before
            importlib.import_module(f"dbt.adapters.{module.name}")


def serve(folder: Path) -> None:
    """Listen on ``folder``'s socket and fork a dbt for every request, until end of input on
    stdin (the warm worker and every run it forked have exited)."""
    preload()
    if threading.active_count() > 1:
        print("dbt's fork server: a thread runs after import; not serving", file=sys.stderr)
        return
    gc.collect()
    gc.freeze()  # children share these pages
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # each request's watcher is reaped at once
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(folder / SOCKET_NAME))
    listener.listen(16)
    with listener:
        while True:
            ready, _, _ = select.select([listener.fileno(), sys.stdin.fileno()], [], [])
            if sys.stdin.fileno() in ready and not os.read(sys.stdin.fileno(), 1 << 16):
                return
            if listener.fileno() in ready:
                connection, _ = listener.accept()
                with connection:
                    _accept(connection, listener, folder)


def _accept(connection: socket.socket, listener: socket.socket, folder: Path) -> None:
    """One request: fork its watcher, which forks the dbt (module docstring)."""
    try:
        request, streams = _receive(connection)
    except (OSError, ValueError):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        code = 1
        try:
            listener.close()
            code = _watch(connection, request, streams, folder)
        finally:
            os._exit(code)
    for fd in streams:
        os.close(fd)


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _address = connection.recvmsg(
        1 << 20, socket.CMSG_LEN(len(STREAMS) * fds.itemsize)
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    while not data.endswith(b"\n"):
        more = connection.recv(1 << 20)
        if not more:
            raise ValueError("incomplete request")
        data += more
    if len(fds) != len(STREAMS):
        for fd in fds:
            os.close(fd)
        raise ValueError("a request must pass stdin, stdout and stderr")
    return json.loads(data), list(fds)


def _watch(
    connection: socket.socket, request: Mapping[str, Any], streams: list[int], folder: Path
) -> int:
    """In the watcher: fork dbt, tell the client its pid and then its exit code; kill it if the
    client dies first (a killed ``dbt`` leaves nothing running). Signals meant for a process
    group (Ctrl-C, a service manager's SIGTERM) are dbt's to act on: the watcher ignores them
    and reports how dbt ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        connection.close()
        os._exit(_run_dbt(request, streams))
    for fd in streams:
        os.close(fd)
    _record(folder, pid, request)
    connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")

    ended = threading.Event()  # reaped: its pid may belong to another process now

    def kill_if_client_dies() -> None:
        with contextlib.suppress(OSError):
            while connection.recv(1 << 10):
                pass
        if not ended.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill_if_client_dies, daemon=True).start()
    _, status = os.waitpid(pid, 0)
    ended.set()
    with contextlib.suppress(OSError):
        reply = {"exit_code": os.waitstatus_to_exitcode(status)}
        connection.sendall(json.dumps(reply).encode() + b"\n")
    return 0


def read_served(folder: Path) -> list[dict[str, Any]]:
    """What the server of ``folder`` ran, one entry per dbt it forked (``_record``)."""
    with contextlib.suppress(OSError):
        lines = (folder / SERVED_LOG_NAME).read_text().splitlines()
        return [json.loads(line) for line in lines]
    return []


def _record(folder: Path, pid: int, request: Mapping[str, Any]) -> None:
    """One line per dbt started: what this server ran, and for which invocation folder
    (``DBT_TARGET_PATH``), since a served dbt's ``/proc`` entry shows the server's command
    line and environment (operators, tests)."""
    line = {
        "pid": pid,
        "command": list(request["args"][:1]),
        "target_path": request["env"].get("DBT_TARGET_PATH"),
    }
    with contextlib.suppress(OSError), (folder / SERVED_LOG_NAME).open("a") as log:
        log.write(json.dumps(line) + "\n")


def _run_dbt(request: Mapping[str, Any], streams: list[int]) -> int:
    """In the dbt child: become the process the client would have exec'd, run dbt's command
    line, and leave the way a finished interpreter does (exit handlers run)."""
    for target, fd in zip(STREAMS, streams, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # time.tzname / time.timezone (set at import) follow the client's TZ too
    sys.argv = ["dbt", *request["args"]]
    from dbt.cli.main import cli

    code: int = 1
    try:
        cli.main(args=list(request["args"]), prog_name="dbt")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - what an uncaught error does in a fresh dbt
        import traceback

        traceback.print_exc()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    return code


# --- started by the warm worker --------------------------------------------------------------


def start(real_dbt: str) -> tuple[subprocess.Popen, Path]:
    """Start a server in a new private folder; the process and the folder (for
    ``FORK_SERVER_ENV``). It ends at end of its stdin: when the caller, and every child that
    inherited the pipe, have exited."""
    folder = Path(tempfile.mkdtemp(prefix="orchestration-dbt-fork-"))  # mode 0700
    write_client(folder, real_dbt)
    env = {key: value for key, value in os.environ.items() if key != FORK_SERVER_ENV}
    process = subprocess.Popen(
        [sys.executable, "-m", __name__, str(folder)], stdin=subprocess.PIPE, env=env
    )
    return process, folder


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    folder = Path(sys.argv[1])
    signal.signal(signal.SIGTERM, _interrupt)  # stopped: remove the folder on the way out
    # dbt's own script runs with its bin folder first on sys.path, not a working directory.
    sys.path[:] = [path for path in sys.path if path not in ("", os.getcwd())]
    try:
        with contextlib.suppress(KeyboardInterrupt):
            serve(folder)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
