"""A local fake of the dbt Cloud v2 API, on 127.0.0.1, that runs real dbt.

The real dbt Cloud API cannot be reached from here (the network reaches only package
registries), so the tests talk HTTP to this server instead. It implements exactly the
endpoints our code and dagster-dbt's client call, with bodies shaped like the documented v2 API
(``{"status": {...}, "data": ...}``; run status codes 1 queued, 2 starting, 3 running,
10 success, 20 error, 30 cancelled):

- ``GET/POST /api/v2/accounts/{account}/jobs/``: list (paged) and create jobs
- ``POST .../jobs/{job}/run/``: trigger a run (``steps_override``), answered queued
- ``POST .../jobs/{job}/rerun/``: restart the job's latest run from failure (``dbt retry``)
- ``GET .../runs/``: runs of a job (``job_definition_id``, ``order_by=-id``, ``limit``)
- ``GET .../runs/{run}/`` (``include_related=run_steps`` adds the step logs)
- ``POST .../runs/{run}/cancel/``
- ``GET .../runs/{run}/artifacts/`` and ``.../artifacts/{path}``

Each run executes its steps with the real ``dbt`` executable on a copy of the dbt project,
against the test's DuckDB file, in its own target folder, so ``run_results.json`` and
``manifest.json`` are genuine. dbt sees ``DBT_CLOUD_RUN_ID`` in its metadata env as on dbt
Cloud. Every request is recorded (method, path, Authorization header) so tests can assert which
endpoints were used and that the token travelled only there. ``hold_runs`` keeps new runs
``running`` without starting dbt, for timeouts; ``cancel_held_runs`` cancels them instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from orchestration.dbt.project import dbt_executable

QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
HUMANIZED = {
    QUEUED: "Queued",
    STARTING: "Starting",
    RUNNING: "Running",
    SUCCESS: "Success",
    ERROR: "Error",
    CANCELLED: "Cancelled",
}
TERMINAL = {SUCCESS, ERROR, CANCELLED}
PARTIAL_PARSE = "partial_parse.msgpack"


@dataclass
class FakeRun:
    id: int
    job_id: int
    steps: list[str]
    target: Path
    status: int = QUEUED
    logs: str = ""
    process: subprocess.Popen | None = None
    state: Path | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: dict[str, Any] | None


class FakeDbtCloud:
    """The fake API for one account, project and environment. ``start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        project_dir: Path,
        workdir: Path,
        duckdb_path: Path,
        token: str,
        account_id: int = 4321,
        project_id: int = 11,
        environment_id: int = 22,
    ) -> None:
        self.project_dir = project_dir
        self.workdir = workdir
        self.duckdb_path = duckdb_path
        self.token = token
        self.account_id = account_id
        self.project_id = project_id
        self.environment_id = environment_id
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, FakeRun] = {}
        self.requests: list[Request] = []
        self.hold_runs = False
        self.cancel_held_runs = False
        """With ``hold_runs``: the first poll of a held run finds it cancelled, as when
        someone cancels it in dbt Cloud's UI."""
        self._lock = threading.Lock()
        self._next_id = 100
        self._server: ThreadingHTTPServer | None = None
        self._partial_parse: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeDbtCloud:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for run in self.runs.values():
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add_job(self, name: str, steps: list[str]) -> int:
        """A job as a team would have created it in dbt Cloud's UI."""
        with self._lock:
            job_id = self._new_id()
            self.jobs[job_id] = self._job_body(job_id, name, steps)
        return job_id

    def endpoints(self) -> set[tuple[str, str]]:
        """(method, path with ids replaced by ``{id}``) of every request received."""
        return {(r.method, re.sub(r"/\d+", "/{id}", r.path)) for r in self.requests}

    # -- HTTP ---------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"null") if length else None
        auth = handler.headers.get("Authorization")
        self.requests.append(Request(method, parsed.path, auth, body))
        if auth != f"Token {self.token}":
            return self._send(handler, 401, {"status": _status(401, "Invalid token")})
        prefix = f"/api/v2/accounts/{self.account_id}"
        path = parsed.path.rstrip("/")
        if not path.startswith(prefix):
            return self._send(handler, 404, {"status": _status(404, "Not found")})
        route = path[len(prefix) :] or "/"
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        try:
            code, data = self._route(method, route, query, body or {})
        except KeyError as missing:
            code, data = 404, f"not found: {missing}"
        if code != 200:
            return self._send(handler, code, {"status": _status(code, str(data)), "data": None})
        if isinstance(data, _Raw):  # an artifact: the file itself, as dbt Cloud serves it
            return self._send(handler, 200, data.document)
        return self._send(handler, 200, {"status": _status(200, "Success!"), "data": data})

    def _route(
        self, method: str, route: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        parts = route.strip("/").split("/")
        if parts == ["jobs"] and method == "GET":
            jobs = [
                job
                for job in self.jobs.values()
                if str(job["project_id"]) == query.get("project_id", str(self.project_id))
                and str(job["environment_id"])
                == query.get("environment_id", str(self.environment_id))
            ]
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
            return 200, jobs[offset : offset + limit]
        if parts == ["jobs"] and method == "POST":
            with self._lock:
                job_id = self._new_id()
                self.jobs[job_id] = self._job_body(job_id, body["name"], ["dbt build"])
            return 200, self.jobs[job_id]
        if len(parts) == 3 and parts[0] == "jobs" and method == "POST":
            job = self.jobs[int(parts[1])]
            if parts[2] == "run":
                steps = body.get("steps_override") or job["execute_steps"]
                return 200, self._details(self._start(job["id"], steps))
            if parts[2] == "rerun":
                return 200, self._details(self._rerun(job))
        if parts == ["runs"] and method == "GET":
            runs = sorted(self.runs.values(), key=lambda r: r.id, reverse=True)
            if "job_definition_id" in query:
                runs = [r for r in runs if str(r.job_id) == query["job_definition_id"]]
            return 200, [self._details(r) for r in runs[: int(query.get("limit", 100))]]
        if parts[0] == "runs" and len(parts) >= 2:
            run = self.runs[int(parts[1])]
            if len(parts) == 2 and method == "GET":
                if self.cancel_held_runs and run.process is None and run.status == RUNNING:
                    self._finish(run, CANCELLED)
                related = query.get("include_related", "")
                return 200, self._details(run, steps="run_steps" in related)
            if parts[2:] == ["cancel"] and method == "POST":
                self._cancel(run)
                return 200, self._details(run)
            if parts[2] == "artifacts" and method == "GET":
                return self._artifact(run, "/".join(parts[3:]))
        return 404, f"no endpoint {method} {route}"

    def _send(self, handler: BaseHTTPRequestHandler, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # -- runs ---------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _job_body(self, job_id: int, name: str, steps: list[str]) -> dict[str, Any]:
        return {
            "id": job_id,
            "account_id": self.account_id,
            "project_id": self.project_id,
            "environment_id": self.environment_id,
            "name": name,
            "execute_steps": steps,
            "job_type": "other",
        }

    def _start(self, job_id: int, steps: list[str], *, retry_of: FakeRun | None = None) -> FakeRun:
        with self._lock:
            run_id = self._new_id()
            run = FakeRun(run_id, job_id, list(steps), self.workdir / f"run-{run_id}")
            self.runs[run_id] = run
        run.target.mkdir(parents=True)
        if self._partial_parse is not None and self._partial_parse.is_file():
            # Like dbt Cloud's partial parsing between runs: dbt re-parses changed files only.
            (run.target / PARTIAL_PARSE).write_bytes(self._partial_parse.read_bytes())
        if retry_of is not None:  # dbt retry reads the failed run's artifacts as its --state
            run.state = self.workdir / f"run-{run_id}-state"
            run.state.mkdir()
            for name in ("run_results.json", "manifest.json"):
                if (retry_of.target / name).is_file():
                    (run.state / name).write_bytes((retry_of.target / name).read_bytes())
        if not self.hold_runs:
            threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        else:
            run.status = RUNNING
        return run

    def _rerun(self, job: dict[str, Any]) -> FakeRun:
        """dbt Cloud retries the job's latest run from its failure; after a success it runs
        the job's own steps from the start."""
        latest = max((r for r in self.runs.values() if r.job_id == job["id"]), key=lambda r: r.id)
        if latest.status == ERROR:
            return self._start(job["id"], ["dbt retry"], retry_of=latest)
        return self._start(job["id"], job["execute_steps"])

    def _execute(self, run: FakeRun) -> None:
        run.status = STARTING
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_CLOUD_")}
        env.update(
            DUCKDB_PATH=str(self.duckdb_path),
            DBT_PROFILES_DIR=str(self.project_dir),
            DBT_PROJECT_DIR=str(self.project_dir),
            DBT_TARGET_PATH=str(run.target),
            DBT_LOG_PATH=str(run.target),
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            # dbt puts DBT_ENV_CUSTOM_ENV_* into run_results' metadata.env, as on dbt Cloud.
            DBT_ENV_CUSTOM_ENV_DBT_CLOUD_RUN_ID=str(run.id),
        )
        run.status = RUNNING
        for step in run.steps:
            argv = shlex.split(step)
            assert argv[0] == "dbt", step
            if argv[1] == "retry":
                assert run.state is not None
                argv += ["--state", str(run.state)]
            run.process = subprocess.Popen(
                [dbt_executable(), *argv[1:]],
                cwd=self.project_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            out, _ = run.process.communicate()
            run.logs += out
            if run.status == CANCELLED:
                return
            if run.process.returncode != 0:
                self._finish(run, ERROR)
                return
        self._finish(run, SUCCESS)

    def _finish(self, run: FakeRun, status: int) -> None:
        if (run.target / PARTIAL_PARSE).is_file():
            self._partial_parse = run.target / PARTIAL_PARSE
        run.finished_at = datetime.now(UTC).isoformat()
        run.status = status

    def _cancel(self, run: FakeRun) -> None:
        if run.status in TERMINAL:
            return
        self._finish(run, CANCELLED)
        if run.process is not None and run.process.poll() is None:
            run.process.terminate()

    def wait_idle(self, timeout_seconds: float = 60) -> None:
        """Until no run is executing dbt (a cancelled run's dbt may still be stopping)."""
        deadline = time.monotonic() + timeout_seconds
        while any(r.process and r.process.poll() is None for r in self.runs.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("fake dbt Cloud runs still executing")
            time.sleep(0.1)

    def _details(self, run: FakeRun, *, steps: bool = False) -> dict[str, Any]:
        details: dict[str, Any] = {
            "id": run.id,
            "trigger_id": run.id,
            "account_id": self.account_id,
            "project_id": self.project_id,
            "environment_id": self.environment_id,
            "job_definition_id": run.job_id,
            "status": run.status,
            "status_humanized": HUMANIZED[run.status],
            "in_progress": run.status not in TERMINAL,
            "is_complete": run.status in TERMINAL,
            "is_success": run.status == SUCCESS,
            "is_error": run.status == ERROR,
            "is_cancelled": run.status == CANCELLED,
            "created_at": run.created_at,
            "finished_at": run.finished_at,
            "href": f"{self.url}/deploy/{self.account_id}/projects/{self.project_id}/runs/{run.id}",
        }
        if steps:
            details["run_steps"] = [
                {
                    "name": f"Invoke {' / '.join(run.steps)}",
                    "logs": run.logs,
                    "status_humanized": HUMANIZED[run.status],
                }
            ]
        return details

    def _artifact(self, run: FakeRun, path: str) -> tuple[int, Any]:
        names = sorted(
            name for name in ("manifest.json", "run_results.json") if (run.target / name).is_file()
        )
        if run.status not in TERMINAL:
            names = []  # dbt Cloud publishes a run's artifacts when it ends
        if not path:
            return 200, names
        if path not in names:
            return 404, f"artifact {path} not found for run {run.id}"
        return 200, _Raw(json.loads((run.target / path).read_text()))


@dataclass
class _Raw:
    document: Any


def _status(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "is_success": code == 200, "user_message": message}
