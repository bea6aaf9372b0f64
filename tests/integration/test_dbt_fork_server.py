"""The dbt fork server (``orchestration/dbt/fork_server.py``) with real dbt on DuckDB: a dbt it
serves behaves as the ordinary ``dbt`` does — same results, exit code, JSON log, signals — and
when there is no server the client runs the ordinary ``dbt`` itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbt.cli.exceptions import ExitCodes

from orchestration.dbt import fork_server
from orchestration.dbt.project import real_dbt

pytestmark = pytest.mark.integration

PROFILE = """\
fork_server_test:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('DUCKDB_PATH') }}"
      threads: 1
"""
# Python's own loops, in dbt's Jinja: a macro that runs until it is interrupted.
SPIN_MACRO = """\
{% macro spin() %}
  {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}
{% endmacro %}
"""

ZONE_MACRO = """\
{% macro zone() %}
  {% set now = modules.datetime.datetime.now().astimezone() %}
  {{ print("zone=" ~ now.strftime("%Z")) }}
{% endmacro %}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-model project (one model errors) with a macro that never ends."""
    root = tmp_path_factory.mktemp("fork_server_project")
    (root / "dbt_project.yml").write_text(
        "name: fork_server_test\nversion: '1.0'\nprofile: fork_server_test\n"
    )
    (root / "profiles.yml").write_text(PROFILE)
    (root / "models").mkdir()
    (root / "models" / "good.sql").write_text("select 1 as id\n")
    (root / "models" / "after_good.sql").write_text("select id from {{ ref('good') }}\n")
    (root / "models" / "bad.sql").write_text("select * from a_table_that_is_not_there\n")
    (root / "macros").mkdir()
    (root / "macros" / "spin.sql").write_text(SPIN_MACRO)
    (root / "macros" / "zone.sql").write_text(ZONE_MACRO)
    return root


@pytest.fixture(scope="module")
def server() -> Iterator[Path]:
    """A running fork server's folder, once it listens."""
    process, folder = fork_server.start(real_dbt())
    try:
        deadline = time.monotonic() + 60
        while not fork_server.is_serving(folder):
            assert process.poll() is None, "the fork server exited"
            assert time.monotonic() < deadline, "the fork server did not listen within 60 s"
            time.sleep(0.1)
        yield folder
    finally:
        process.stdin.close()  # end of input: it stops
        process.wait(timeout=10)
    assert not folder.exists()  # it removes its folder


def dbt_env(project: Path, tmp_path: Path, folder: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != fork_server.FORK_SERVER_ENV}
    env |= {"DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"), "DBT_PROFILES_DIR": str(project)}
    env |= {"DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path)}
    if folder is not None:
        env[fork_server.FORK_SERVER_ENV] = str(folder)
    return env


def run(executable: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, list]:
    """Exit code and JSON log lines of one dbt command, started the way dagster-dbt starts it."""
    done = subprocess.run(
        [executable, *args, "--log-format", "json"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    return done.returncode, lines


def result_statuses(tmp_path: Path) -> dict[str, str]:
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r["status"] for r in results}


def test_a_served_build_is_the_ordinary_build(project: Path, server: Path, tmp_path) -> None:
    plain_dir, served_dir = tmp_path / "plain", tmp_path / "served"
    plain_dir.mkdir()
    served_dir.mkdir()
    client = str(server / fork_server.CLIENT_NAME)

    plain_code, plain_log = run(real_dbt(), ["build"], dbt_env(project, plain_dir, None), project)
    served_code, served_log = run(client, ["build"], dbt_env(project, served_dir, server), project)

    assert plain_code == served_code == 1  # a model errored
    assert result_statuses(plain_dir) == result_statuses(served_dir)
    assert result_statuses(served_dir)["model.fork_server_test.bad"] == "error"
    assert result_statuses(served_dir)["model.fork_server_test.after_good"] == "success"
    names = [line["info"]["name"] for line in plain_log]
    assert [line["info"]["name"] for line in served_log] == names
    # It ran in a child of the server (the pid dbt logs is one the server forked).
    assert {line["info"]["pid"] for line in served_log} <= {
        s["pid"] for s in fork_server.read_served(server)
    }
    assert fork_server.read_served(server)[-1]["command"] == ["build"]

    ok_code, _ = run(
        client, ["build", "--select", "good"], dbt_env(project, served_dir, server), project
    )
    assert ok_code == 0


def test_without_a_server_the_client_runs_the_ordinary_dbt(project: Path, tmp_path) -> None:
    (tmp_path / "no_server").mkdir()
    client = fork_server.write_client(tmp_path / "no_server", real_dbt())
    env = dbt_env(project, tmp_path, tmp_path / "no_server")
    process = subprocess.Popen(
        [str(client), "ls", "--log-format", "json"], env=env, cwd=project, stdout=subprocess.PIPE
    )
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0
    pids = {json.loads(line)["info"]["pid"] for line in out.splitlines() if line.startswith(b"{")}
    assert pids == {process.pid}  # dbt itself, in the client's place


def test_dbt_deps_is_never_served(project: Path, server: Path, tmp_path) -> None:
    before = len(fork_server.read_served(server))
    code, _ = run(
        str(server / fork_server.CLIENT_NAME), ["deps"], dbt_env(project, tmp_path, server), project
    )
    assert code == 0
    assert len(fork_server.read_served(server)) == before


def spinning(project: Path, server: Path, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A served ``dbt run-operation spin`` (never ends by itself) and its dbt's pid."""
    before = len(fork_server.read_served(server))
    client = subprocess.Popen(
        [str(server / fork_server.CLIENT_NAME), "run-operation", "spin"],
        env=dbt_env(project, tmp_path, server),
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(fork_server.read_served(server)) == before:
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.05)
    time.sleep(3)  # into the macro
    assert client.poll() is None
    return client, fork_server.read_served(server)[-1]["pid"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigint_to_the_client_interrupts_dbt(project: Path, server: Path, tmp_path) -> None:
    client, dbt_pid = spinning(project, server, tmp_path)
    assert alive(dbt_pid)
    client.send_signal(signal.SIGINT)
    # What dbt itself exits with when Ctrl-C stops a run-operation (and not the client's own
    # death by SIGINT, which would leave dbt to the server's watcher).
    assert client.wait(timeout=60) == ExitCodes.UnhandledError
    assert not alive(dbt_pid)


def test_a_killed_client_takes_its_dbt_with_it(project: Path, server: Path, tmp_path) -> None:
    client, dbt_pid = spinning(project, server, tmp_path)
    client.kill()
    client.wait()
    deadline = time.monotonic() + 30
    while alive(dbt_pid):
        assert time.monotonic() < deadline, "dbt outlived its killed client"
        time.sleep(0.1)


def test_a_served_dbt_reads_the_clients_time_zone(project: Path, server: Path, tmp_path) -> None:
    env = dbt_env(project, tmp_path, server) | {"TZ": "Asia/Tokyo"}
    done = subprocess.run(
        [str(server / fork_server.CLIENT_NAME), "run-operation", "zone"],
        env=env,
        cwd=project,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    assert b"zone=JST" in done.stdout


def test_a_signal_to_the_watcher_does_not_cut_the_client_off_from_dbt(
    project: Path, server: Path, tmp_path
) -> None:
    client, dbt_pid = spinning(project, server, tmp_path)
    watcher = int(Path(f"/proc/{dbt_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(watcher, signal.SIGTERM)  # e.g. a service manager stopping the process group
    time.sleep(1)
    assert client.poll() is None and alive(dbt_pid)
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=60) == ExitCodes.UnhandledError  # dbt's own end, reported


def test_a_stopped_server_removes_its_folder() -> None:
    process, folder = fork_server.start(real_dbt())
    deadline = time.monotonic() + 60
    while not fork_server.is_serving(folder):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    process.terminate()
    assert process.wait(timeout=10) == 0
    assert not folder.exists()
