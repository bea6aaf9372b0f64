"""A throwaway PostgreSQL server for the test session: Debian's binaries, started once.

The production storage (``deploy/dagster.yaml``) is PostgreSQL, so the recovery and sensor
suites run against a real server as well as SQLite. One server per session (``initdb`` costs a
few seconds), one fresh database per test (``CREATE DATABASE`` costs milliseconds), stopped by
its PID at the end of the session.

Where the server comes from, in order:

1. ``ORCHESTRATION_TEST_POSTGRES_URL`` (``postgresql://user:password@host:port``): an existing
   server whose user may ``CREATE DATABASE`` — for machines without Debian's package;
2. the server binaries (``ORCHESTRATION_PG_BIN_DIR``, else ``/usr/lib/postgresql/<newest>/bin``,
   else ``pg_ctl`` on PATH): ``initdb`` into a temporary folder, ``pg_ctl start`` on a free port
   of 127.0.0.1 with its socket in that folder. PostgreSQL refuses to run as root, so as root it
   runs as the ``postgres`` OS user (created by Debian's package) through ``runuser``.

Missing binaries fail the tests that need them, with the command that installs them: CI
(``.ci/run``) installs them, and a skipped production-storage suite would pass silently.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

SERVER_URL_ENV = "ORCHESTRATION_TEST_POSTGRES_URL"
BIN_DIR_ENV = "ORCHESTRATION_PG_BIN_DIR"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVICE_USER = "postgres"  # the OS user Debian's package creates; the server's superuser too
START_TIMEOUT_SECONDS = 30
START_ATTEMPTS = 3
STOP_TIMEOUT_SECONDS = 30
INITDB_TIMEOUT_SECONDS = 120
CONNECT_TIMEOUT_SECONDS = 10

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. The production-storage tests "
    "need them: install Debian's package (`apt-get install postgresql`, as `.ci/run` does), or "
    f"set {BIN_DIR_ENV} to the folder holding pg_ctl, or set {SERVER_URL_ENV} to "
    "postgresql://user:password@host:port of a server where that user may CREATE DATABASE."
)


class PostgresUnavailableError(RuntimeError):
    """No server could be started or reached; the message says how to provide one."""


@dataclass(frozen=True)
class PostgresDatabase:
    """One database on the session's server; what a client needs to connect."""

    host: str
    port: int
    user: str
    password: str
    name: str

    def dsn(self) -> str:
        """A libpq key/value DSN (psycopg2)."""
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={self.name} connect_timeout={CONNECT_TIMEOUT_SECONDS}"
        )

    def dagster_storage_yaml(self, password_env: str, *, pooled: bool = True) -> str:
        """The storage blocks of a dagster.yaml for this database, in the shape of
        ``deploy/dagster.yaml`` (the pooled storages; ``pooled=False``: stock
        ``storage: postgres:``). The password is read from ``password_env``, never written.

        ``scheme`` names the driver: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3,
        which dagster-postgres does not install (it depends on psycopg2-binary).
        """
        postgres_db = (
            "    postgres_db:\n"
            f"      hostname: {self.host}\n"
            f"      port: {self.port}\n"
            f"      username: {self.user}\n"
            "      password:\n"
            f"        env: {password_env}\n"
            f"      db_name: {self.name}\n"
            "      scheme: postgresql+psycopg2\n"
        )
        if not pooled:
            return "storage:\n  postgres:\n" + postgres_db
        blocks = (
            (
                "run_storage",
                "orchestration.instance.postgres_storage",
                "PooledPostgresRunStorage",
            ),
            (
                "event_log_storage",
                "orchestration.instance.postgres_event_log",
                "PooledPostgresEventLogStorage",
            ),
            (
                "schedule_storage",
                "orchestration.instance.postgres_storage",
                "PooledPostgresScheduleStorage",
            ),
        )
        return "".join(
            f"{key}:\n  module: {module}\n  class: {name}\n  config:\n{postgres_db}"
            for key, module, name in blocks
        )


@dataclass
class PostgresServer:
    """The session's server. ``pid``/``data_dir`` are None for a server we did not start."""

    host: str
    port: int
    user: str
    password: str
    data_dir: Path | None = None
    pid: int | None = None
    _created: list[str] = field(default_factory=list)
    _roles: list[str] = field(default_factory=list)

    def connect(self, dbname: str = "postgres") -> object:
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )

    def create_database(
        self, prefix: str = "test", *, user: str | None = None, password: str | None = None
    ) -> PostgresDatabase:
        """A new, empty database (``CREATE DATABASE`` cannot run inside a transaction).

        With ``user``, a login role of that name is created first (password ``password``, or a
        random one) and owns the database: the connection then needs exactly those
        credentials, as a warehouse login would.
        """
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        owner, secret = self.user, self.password
        connection = self.connect()
        try:
            connection.autocommit = True  # type: ignore[attr-defined]
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                if user is not None:
                    owner, secret = user, password or secrets.token_urlsafe(16)
                    cursor.execute(f'create role "{owner}" login password %s', (secret,))
                    self._roles.append(owner)
                cursor.execute(f'create database "{name}" owner "{owner}"')
        finally:
            connection.close()  # type: ignore[attr-defined]
        self._created.append(name)
        return PostgresDatabase(self.host, self.port, owner, secret, name)

    def drop_created_databases(self) -> None:
        """For a server we did not start: leave it as we found it."""
        if not self._created and not self._roles:
            return
        connection = self.connect()
        try:
            connection.autocommit = True  # type: ignore[attr-defined]
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                for name in self._created:
                    with contextlib.suppress(Exception):
                        cursor.execute(f'drop database if exists "{name}" with (force)')
                for role in self._roles:
                    with contextlib.suppress(Exception):
                        cursor.execute(f'drop role if exists "{role}"')
        finally:
            connection.close()  # type: ignore[attr-defined]
        self._created.clear()
        self._roles.clear()


def find_bin_dir() -> Path | None:
    """The folder holding ``pg_ctl`` and ``initdb``, newest Debian version first."""
    explicit = os.environ.get(BIN_DIR_ENV)
    if explicit:
        return Path(explicit) if (Path(explicit) / "pg_ctl").is_file() else None
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: _version_key(path.parent.name),
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "pg_ctl").is_file() and (candidate / "initdb").is_file():
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").is_file():
        return Path(on_path).parent
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_service_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run ``argv`` as the ``postgres`` user."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailableError("Running as root, but `runuser` is missing (util-linux).")
    return [runuser, "-u", SERVICE_USER, "--", *argv]


def _service_uid_gid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailableError(
            f"Running as root, and there is no {SERVICE_USER!r} OS user to run PostgreSQL as "
            "(Debian's `postgresql` package creates it)."
        ) from None
    return entry.pw_uid, entry.pw_gid


def _run(argv: list[str], *, timeout: float, what: str) -> None:
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired as error:
        raise PostgresUnavailableError(f"{what} did not finish within {timeout:.0f} s") from error
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()[-3000:]
        raise PostgresUnavailableError(f"{what} failed (exit {completed.returncode}):\n{output}")


def start_server() -> PostgresServer:
    """``initdb`` + ``pg_ctl start`` on a free 127.0.0.1 port; raises with a clear message."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError(INSTALL_HINT)
    owner = _service_uid_gid()
    # Not under pytest's tmp_path: that is private to the current user (0700), and the
    # server may run as another one.
    root = Path(tempfile.mkdtemp(prefix="orchestration-pg-"))
    data_dir, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    password = secrets.token_urlsafe(16)
    password_file = root / "pwfile"
    password_file.write_text(password + "\n")
    if owner is not None:
        for path in (root, socket_dir, password_file):
            os.chown(path, *owner)
    root.chmod(0o700)
    try:
        _run(
            _as_service_user(
                [
                    str(bin_dir / "initdb"),
                    "--pgdata",
                    str(data_dir),
                    "--username",
                    SERVICE_USER,
                    "--pwfile",
                    str(password_file),
                    "--auth-local",
                    "trust",
                    # Over TCP a password is required, as in production: a test that forgets
                    # to pass DBT_POSTGRES_PASSWORD / the storage password fails loudly.
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    # Whatever LANG says: a minimal CI image may not have that locale.
                    "--locale",
                    "C",
                    "--no-sync",
                ]
            ),
            timeout=INITDB_TIMEOUT_SECONDS,
            what="initdb",
        )
        password_file.unlink()
        port = _start_on_a_free_port(bin_dir, data_dir, socket_dir, root / "server.log")
        pid = _postmaster_pid(data_dir)
    except BaseException:
        _kill_leftover(data_dir)
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PostgresServer(
        host="127.0.0.1",
        port=port,
        user=SERVICE_USER,
        password=password,
        data_dir=data_dir,
        pid=pid,
    )


def _start_on_a_free_port(bin_dir: Path, data_dir: Path, socket_dir: Path, log: Path) -> int:
    """``pg_ctl start`` on a free port; another process may take the port between our probe
    and the server's bind, so a failed start is tried again on another port."""
    failure: PostgresUnavailableError | None = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={socket_dir} "
            # A throwaway server: durability buys nothing, and the machine is shared.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        argv = [
            str(bin_dir / "pg_ctl"),
            "start",
            "--pgdata",
            str(data_dir),
            "--log",
            str(log),
            "--options",
            options,
            "--wait",
            "--timeout",
            str(START_TIMEOUT_SECONDS),
        ]
        try:
            _run(_as_service_user(argv), timeout=START_TIMEOUT_SECONDS + 15, what="pg_ctl start")
            return port
        except PostgresUnavailableError as error:
            _kill_leftover(data_dir)
            server_log = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            failure = PostgresUnavailableError(f"{error}\nserver log:\n{server_log}")
    assert failure is not None
    raise failure


def _postmaster_pid(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    return None


def _kill_leftover(data_dir: Path) -> None:
    pid = _postmaster_pid(data_dir)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_server(server: PostgresServer) -> None:
    """Stop the server we started, by its PID: SIGINT is PostgreSQL's "fast" shutdown
    (disconnect clients, stop); SIGKILL if it is still there after the timeout."""
    if server.pid is None or server.data_dir is None:
        server.drop_created_databases()
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def server_from_url(url: str) -> PostgresServer:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgresql", "postgres"} or not parsed.hostname:
        raise PostgresUnavailableError(
            f"{SERVER_URL_ENV}={url!r} is not postgresql://user:password@host:port"
        )
    return PostgresServer(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=unquote(parsed.username or SERVICE_USER),
        password=unquote(parsed.password or ""),
    )


def open_server() -> PostgresServer:
    """The session's server: reached via ``SERVER_URL_ENV`` or started here."""
    url = os.environ.get(SERVER_URL_ENV)
    return server_from_url(url) if url else start_server()
