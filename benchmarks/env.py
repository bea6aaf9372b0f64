"""One isolated pipeline environment per benchmark: a synthetic dbt project, its DuckDB
warehouse, artifact store, fault file and a fresh SQLite ``DAGSTER_HOME``.

Everything the orchestration reads comes from environment variables (``orchestration.settings``),
so each environment is just a dict passed to subprocesses: Dagster runs (``benchmarks.dagster_run``)
and direct ``dbt`` commands see the same warehouse, threads and profile. That matters for
fairness: dbt's partial parsing is invalidated when a variable used in ``profiles.yml`` changes,
so both sides must run with identical values, and both start from the project's
``partial_parse.msgpack`` (dagster-dbt copies it into each invocation's target folder; we do the
same for direct dbt runs).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.timing import ProcessResult, progress, run_process
from orchestration.instance.config import event_log_storage_yaml
from orchestration.settings import REPO_ROOT

DBT_THREADS = 2
"""``--threads 2``: one dbt thread per core of this 2-core machine."""

RESULT_MARKER = "BENCH_RESULT "

DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""
STORAGE_ENV = "BENCH_DAGSTER_STORAGE"
"""``sqlite`` (default: the embedded instance's event log, as ``make run`` writes it) or
``postgres`` (a fresh database per environment on the server ``python -m benchmarks --storage
postgres`` started, reached through ``tests.postgres.SERVER_URL_ENV``)."""
PG_PASSWORD_ENV = "BENCH_DAGSTER_PG_PASSWORD"
EVENT_BATCH_SIZE = "1000"
"""What the Makefile exports as ``DAGSTER_EVENT_BATCH_SIZE`` (unless the caller set one)."""


def storage_name() -> str:
    storage = os.environ.get(STORAGE_ENV, "sqlite")
    if storage not in {"sqlite", "postgres"}:
        raise SystemExit(f"{STORAGE_ENV}={storage!r}: use sqlite or postgres")
    return storage


def instance_yaml(home: Path) -> tuple[str, dict[str, str]]:
    """The bench instance's dagster.yaml and the environment it needs, for ``storage_name()``:
    the product's storage (embedded SQLite event log, or PostgreSQL) with runs executed in the
    launching process (``DefaultRunCoordinator``), as every figure times a run whole."""
    if storage_name() == "sqlite":
        return DAGSTER_YAML + event_log_storage_yaml(home), {}
    from tests.postgres import open_server

    database = open_server().create_database("bench")
    return DAGSTER_YAML + database.dagster_storage_yaml(PG_PASSWORD_ENV), {
        PG_PASSWORD_ENV: database.password
    }


@dataclass(frozen=True)
class JobRun:
    """A Dagster run executed in its own process by ``benchmarks.dagster_run``."""

    run_id: str
    success: bool
    wall_s: float
    """The whole process: imports, definitions, instance, the run itself."""
    run_s: float
    """Dagster's own record of the run: start to end."""
    planned_assets: int = 0
    """Assets the run planned (one event each, written before the run starts)."""


@dataclass(frozen=True)
class DbtRun:
    """A direct ``dbt`` command and the run_results.json it wrote."""

    wall_s: float
    returncode: int
    run_results: dict[str, Any] | None

    def models(self, *, executed_only: bool = True) -> set[str]:
        return models_in(self.run_results, executed_only=executed_only)


def models_in(run_results: Mapping[str, Any] | None, *, executed_only: bool = True) -> set[str]:
    """Model names in a run_results.json: executed ones (success or error), or all listed."""
    if not run_results:
        return set()
    return {
        r["unique_id"].split(".")[-1]
        for r in run_results["results"]
        if r["unique_id"].startswith("model.")
        and (not executed_only or r["status"] in {"success", "error"})
    }


@dataclass
class BenchEnv:
    project: Path
    root: Path
    instance_env: dict[str, str] = field(default_factory=dict)
    """Set by ``reset``: what the instance's dagster.yaml reads from the environment."""

    def __post_init__(self) -> None:
        # DAGSTER_HOME must be absolute, and dbt runs with the project as its working folder.
        self.project = self.project.resolve()
        self.root = self.root.resolve()

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def duckdb_path(self) -> Path:
        """One warehouse per project, shared by its environments (they never run at once).

        dbt's partial parsing hashes the profile's connection values, DuckDB's ``path``
        included: a warehouse per environment would make every dbt command of all but one
        environment re-parse the whole project, on both sides of every comparison.
        """
        return self.project.parent.parent / "warehouses" / f"{self.project.name}.duckdb"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def faults_file(self) -> Path:
        return self.root / "faults.json"

    @property
    def direct_target(self) -> Path:
        """Target folder of direct dbt commands: never the project's own ``target/``, whose
        manifest.json our definitions load."""
        return self.root / "direct_target"

    def environ(self, **extra: str) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO_ROOT),
            "DAGSTER_HOME": str(self.dagster_home),
            "DBT_PROJECT_DIR": str(self.project),
            "DBT_PROFILES_DIR": str(self.project),
            "DUCKDB_PATH": str(self.duckdb_path),
            "DBT_THREADS": str(DBT_THREADS),
            "ORCHESTRATION_ARTIFACTS_URI": str(self.artifacts_dir),
            "ORCHESTRATION_FAULTS_FILE": str(self.faults_file),
            # Benchmarks inject faults to make runs fail; fault injection is off by default.
            "ORCHESTRATION_FAULTS_ENABLED": "1",
            "ORCHESTRATION_UPLOAD_BACKOFF_SECONDS": "0.05",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DO_NOT_TRACK": "1",
            "DAGSTER_EVENT_BATCH_SIZE": os.environ.get(
                "DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE
            ),
            **self.instance_env,
        }
        for name in ("DBT_TARGET", "DBT_TARGET_PATH", "DBT_LOG_PATH", "DBT_LOG_FORMAT"):
            env.pop(name, None)
        env.update(extra)
        return env

    def reset(self) -> BenchEnv:
        """A fresh instance, warehouse and store; the project (and its manifest) is kept."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.dagster_home.mkdir(parents=True)
        self.duckdb_path.parent.mkdir(exist_ok=True)
        text, self.instance_env = instance_yaml(self.dagster_home)
        (self.dagster_home / "dagster.yaml").write_text(text)
        self.direct_target.mkdir()
        return self

    def parse(self) -> ProcessResult:
        """``dbt parse`` via the orchestration, forced when the last parse of this project used
        another warehouse path (its ``partial_parse.msgpack`` would not match, see above)."""
        stamp = self.project / "target" / ".bench_parsed_for"
        args = [sys.executable, "-m", "orchestration", "prepare"]
        if not stamp.is_file() or stamp.read_text() != str(self.duckdb_path):
            args.append("--force")
        result = run_process(args, env=self.environ(), cwd=REPO_ROOT).check()
        stamp.write_text(str(self.duckdb_path))
        return result

    def ensure_built(self) -> None:
        """A first full ``dbt build`` (the night before), unless this project's shared warehouse
        already holds one: recoveries and builds only ever replace tables that exist."""
        marker = self.duckdb_path.with_suffix(".built")
        if marker.is_file() and self.duckdb_path.is_file():
            return
        # A project whose seeds load the tables its sources read (the seeded shape) needs
        # them loaded first: dbt's own DAG does not order seed → source reader.
        if (self.project / "seeds").is_dir() and self.dbt(["seed"]).returncode != 0:
            raise RuntimeError(f"dbt seed of {self.project.name} failed")
        if self.dbt(["build"]).returncode != 0:
            raise RuntimeError(f"the first full dbt build of {self.project.name} failed")
        marker.touch()

    def faults(self) -> Any:
        from orchestration.faults.store import FaultStore

        return FaultStore(self.faults_file)

    def run_job(
        self,
        job: str,
        *,
        run_config: Mapping[str, Any] | None = None,
        from_failure_of: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> JobRun:
        """Execute ``job`` in a fresh process (a run worker starts cold too)."""
        args = [sys.executable, "-m", "benchmarks.dagster_run", "--job", job]
        if run_config:
            args += ["--config", json.dumps(run_config)]
        if from_failure_of:
            args += ["--from-failure", from_failure_of]
        for key, value in (tags or {}).items():
            args += ["--tag", f"{key}={value}"]
        result = run_process(args, env=self.environ(), cwd=REPO_ROOT)
        lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        if not lines:
            result.check()
            raise RuntimeError(f"no result from {' '.join(args)}:\n{result.stderr[-3000:]}")
        data = json.loads(lines[-1].removeprefix(RESULT_MARKER))
        return JobRun(
            data["run_id"], data["success"], result.wall_s, data["run_s"], data["planned_assets"]
        )

    def launch_run(
        self,
        parent_run_id: str | None,
        *,
        launcher: str,
        strategy: str,
        tags: Mapping[str, str],
        request: Path | None = None,
    ) -> dict[str, Any]:
        """A recovery run created and launched as the UI and daemon do
        (``benchmarks.launched_run``); its timings and outcome. ``request``: the sensor's run
        request (``sensor_request``), for ``SENSOR_RETRY``; no parent: a plain run (``JOB``)."""
        args = [sys.executable, "-m", "benchmarks.launched_run", "--launcher", launcher]
        args += ["--strategy", strategy]
        if parent_run_id is not None:
            args += ["--parent", parent_run_id]
        if request is not None:
            args += ["--request", str(request)]
        for key, value in tags.items():
            args += ["--tag", f"{key}={value}"]
        result = run_process(args, env=self.environ(), cwd=REPO_ROOT)
        lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        if not lines:
            raise RuntimeError(f"no result from {' '.join(args)}:\n{result.stderr[-3000:]}")
        return json.loads(lines[-1].removeprefix(RESULT_MARKER))

    @staticmethod
    def artifacts_run_config(run_id: str) -> dict[str, Any]:
        """``recover_from_artifacts``'s run config to recover ``run_id``."""
        from orchestration.dbt.assets import DBT_OP_NAME  # imports Dagster: only when asked

        return {"ops": {DBT_OP_NAME: {"config": {"retry_from_run_id": run_id}}}}

    def sensor_request(self, parent_run_id: str) -> Path:
        """The run request ``retry_failed_assets_sensor`` makes for the failed run, evaluated
        once with no backoff and kept in a file (``benchmarks.launched_run``)."""
        path = self.dagster_home.parent / f"sensor-request-{parent_run_id[:8]}.json"
        args = [sys.executable, "-m", "benchmarks.launched_run", "--parent", parent_run_id]
        args += ["--write-sensor-request", str(path)]
        environ = self.environ(ORCHESTRATION_RETRY_BACKOFF_SECONDS="0")
        run_process(args, env=environ, cwd=REPO_ROOT).check()
        return path

    def dbt(self, args: Sequence[str], *, state: Path | None = None) -> DbtRun:
        """A direct dbt command, as a person would type it, with its own target folder."""
        target = self.direct_target
        for stale in ("run_results.json", "partial_parse.msgpack"):
            (target / stale).unlink(missing_ok=True)
        partial = self.project / "target" / "partial_parse.msgpack"
        if partial.is_file():
            shutil.copyfile(partial, target / "partial_parse.msgpack")
        command = [str(Path(sys.executable).parent / "dbt"), *args]
        if state is not None:
            command += ["--state", str(state)]
        env = self.environ(DBT_TARGET_PATH=str(target), DBT_LOG_PATH=str(self.root / "dbt_logs"))
        result = run_process(command, env=env, cwd=self.project)
        run_results_file = target / "run_results.json"
        run_results = (
            json.loads(run_results_file.read_text()) if run_results_file.is_file() else None
        )
        return DbtRun(result.wall_s, result.returncode, run_results)

    def stored_run_results(self, run_id: str) -> dict[str, Any] | None:
        """The (last) run_results.json our op stored for ``run_id``."""
        from orchestration.artifacts.store import find_run_results_keys, open_store

        store = open_store(str(self.artifacts_dir))
        keys = find_run_results_keys(store, run_id)
        return json.loads(store.get_bytes(keys[-1])) if keys else None

    def stored_file(self, run_id: str, name: str) -> Path | None:
        """A stored artifact file of ``run_id``'s dbt invocation (local store)."""
        found = sorted((self.artifacts_dir / "runs" / run_id).glob(f"*/{name}"))
        return found[-1] if found else None


def built_env(work: Path, size: int | str, figure: str) -> tuple[BenchEnv, Any, int]:
    """``figure``'s fresh environment for the project of ``size`` — parsed, and built once (the
    night before) unless its warehouse already is; with the project's graph and model count."""
    from benchmarks.generate import parse_size, write_project

    n, _ = parse_size(size)
    project, graph = write_project(work, size)
    env = BenchEnv(project, work / "envs" / f"{figure}-n{size}").reset()
    progress(f"{figure} n={n}: parse, and a first full dbt build unless one exists")
    env.parse()
    env.ensure_built()
    return env, graph, n


def failed_run(env: BenchEnv, graph: Any, position: str, label: str) -> tuple[str, set, JobRun]:
    """A real failed ``daily_pipeline``: a transient fault in the model ``graph`` picks at
    ``position``. The model, the models that then need to run, and the run."""
    model = graph.pick_failure(position)
    needed = graph.downstream({model})
    env.faults().clear()
    env.faults().inject(model, times=1)
    progress(f"  {label}: {model} fails, {len(needed)} models need to run; failed run…")
    failed = env.run_job("daily_pipeline")
    if failed.success or env.faults().list():
        raise RuntimeError(f"the failed run {failed.run_id} did not fail on {model} as injected")
    return model, needed, failed
