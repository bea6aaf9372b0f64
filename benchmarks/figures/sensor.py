"""Figure 4: one ``retry_failed_assets_sensor`` evaluation with 1,000 to 10,000 assets.

A real failed run of 10,000 dbt models would take the better part of an hour here, so the
instance state is synthesized — through Dagster's own APIs, so the storage holds exactly what a
real run leaves (SQLite instance in a fresh ``DAGSTER_HOME``): a failed run ``F`` of
``daily_pipeline`` created with ``instance.create_run_for_job`` (which writes the
planned-materialization and planned-check events for every asset, as a launch does); ten models
fail (a transient error, spread over the layers) and their downstream gets nothing; every other
asset gets a materialization and a passing evaluation of each blocking check; then a
``STEP_FAILURE`` of the dbt step, ``RUN_FAILURE``, and a run_results.json for F in the artifact
store, as our op stores it. F is the only run (as on a first night): the sensor's batched queries
are the same with or without older history. Writing through the stock SQLite storage costs
several ms per event, mostly because it creates a new SQLAlchemy engine for every write; the
synthesis therefore writes the first ``CALIBRATION_EVENTS`` events stock (timed, reported) and the
rest with one cached engine per shard (``cached_sqlite_engines``: same SQL, same rows), with
``PRAGMA synchronous=OFF``. The tick itself only reads and runs on the stock storage.

Then the sensor (``build_definitions().resolve_sensor_def(...)``) is evaluated with
``build_sensor_context(instance=…, definitions=…)``, several times, each from an empty cursor.
Every public method of the instance's run and event-log storages is wrapped to count calls
(top-level only: a storage method calling another counts once), and SQLAlchemy's
``before_cursor_execute`` counts SQL statements. Runs in a subprocess per size, because the
definitions are built from the environment.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.env import RESULT_MARKER, BenchEnv
from benchmarks.generate import write_project
from benchmarks.timing import Stats, progress, run_process
from orchestration.settings import REPO_ROOT

TARGET_SECONDS_AT_10000 = 0.5
FAILURES = 10
CALIBRATION_EVENTS = 200
STEADY_MATERIALIZATIONS = 100
SENSOR = "retry_failed_assets_sensor"


class QueryCounter:
    """Counts top-level calls to storage methods, and SQL statements."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sql_statements = 0
        self._depth = 0

    def wrap(self, storage: object, label: str) -> None:
        for name in dir(type(storage)):
            if name.startswith("_") or isinstance(getattr(type(storage), name, None), property):
                continue
            method = getattr(storage, name, None)
            if callable(method):
                setattr(storage, name, self._counting(f"{label}.{name}", method))

    def _counting(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0:
                self.calls[name] += 1
            self._depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def on_sql(self, *_: Any) -> None:
        self.sql_statements += 1

    def reset(self) -> None:
        self.calls.clear()
        self.sql_statements = 0


def _events(job_name: str) -> Any:
    """Small constructors for the events a dbt run leaves (imports kept inside the probe)."""
    from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetMaterialization
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.execution.plan.objects import StepFailureData
    from dagster._utils.error import SerializableErrorInfo

    def materialized(key: Any) -> DagsterEvent:
        return DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=job_name,
            step_key="dbt_models",
            event_specific_data=StepMaterializationData(AssetMaterialization(asset_key=key)),
        )

    def checked(check_key: Any) -> DagsterEvent:
        return DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name=job_name,
            step_key="dbt_models",
            event_specific_data=AssetCheckEvaluation(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=True,
                severity=AssetCheckSeverity.ERROR,
                blocking=True,
            ),
        )

    def step_failed(message: str) -> DagsterEvent:
        error = SerializableErrorInfo(message=message, stack=[], cls_name="DagsterDbtCliError")
        return DagsterEvent(
            event_type_value=DagsterEventType.STEP_FAILURE.value,
            job_name=job_name,
            step_key="dbt_models",
            event_specific_data=StepFailureData(error=error, user_failure_data=None),
        )

    def run_event(kind: str) -> DagsterEvent:
        return DagsterEvent(
            event_type_value=getattr(DagsterEventType, kind).value, job_name=job_name
        )

    return materialized, checked, step_failed, run_event


def synthesize(instance: Any, defs: Any, failures: set[str], needed: set[str]) -> dict[str, Any]:
    """The failed run F, as described in the module docstring."""
    from dagster import DagsterRunStatus

    from orchestration.artifacts.store import InvocationRecord, artifact_key, open_store
    from orchestration.artifacts.store import record_invocation as index_invocation
    from orchestration.settings import load_settings

    job = defs.resolve_job_def("daily_pipeline")
    graph = defs.resolve_asset_graph()
    keys = [key for key in graph.get_all_asset_keys() if graph.get(key).is_executable]
    checks = [key for key in graph.asset_check_keys if graph.get_check_spec(key).blocking]
    materialized, checked, step_failed, run_event = _events(job.name)
    with cached_sqlite_engines():  # writes a planned event per asset and per check
        run = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)
    events = [run_event("RUN_START")]
    events += [materialized(key) for key in keys if key.to_user_string() not in needed]
    events += [
        checked(check_key)
        for check_key in checks
        if check_key.asset_key.to_user_string() not in needed
    ]
    message = "connection reset by peer (injected transient fault)"
    events += [step_failed(f"dbt build failed: {message}"), run_event("RUN_FAILURE")]

    # The first CALIBRATION_EVENTS materializations through the stock storage, the rest with
    # one cached engine per shard: same rows, a fraction of the time (and both costs on record).
    calibration = min(CALIBRATION_EVENTS, len(events) - 3)
    timings: dict[str, float] = {}
    for label, batch, cached in (
        ("stock", events[:calibration], False),
        ("cached_engine", events[calibration:], True),
    ):
        started = time.perf_counter()
        with cached_sqlite_engines() if cached else contextlib.nullcontext():
            for event in batch:
                instance.report_dagster_event(event, run_id=run.run_id)
        timings[label] = (time.perf_counter() - started) * 1000 / max(len(batch), 1)

    failed_run = run.run_id
    results = [
        {
            "unique_id": f"model.synthetic.{key.to_user_string()}",
            "status": (
                "error"
                if key.to_user_string() in failures
                else "skipped"
                if key.to_user_string() in needed
                else "success"
            ),
            "message": "connection reset by peer (injected transient fault)"
            if key.to_user_string() in failures
            else None,
        }
        for key in keys
    ]
    run_results = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "invocation_id": "synthetic",
        },
        "results": results,
        "args": {"which": "build"},
    }
    store = open_store(load_settings().artifacts_uri)
    label = "dbt_models-synthetic"
    store.put_bytes(
        artifact_key(failed_run, label, "run_results.json"), json.dumps(run_results).encode()
    )
    index_invocation(
        store,
        failed_run,
        InvocationRecord(
            label=label,
            command="build",
            step_key="dbt_models",
            status="failure",
            files=("run_results.json",),
            created_at=time.time(),
            missing=(),
        ),
    )
    return {
        "assets": len(keys),
        "blocking_checks": len(checks),
        "events_written": len(events) + len(keys) + len(checks),  # + planned, by create_run
        "ms_per_event_stock_storage": round(timings["stock"], 2),
        "ms_per_event_cached_engine": round(timings["cached_engine"], 2),
    }


def _evaluate(
    instance: Any, defs: Any, sensor: Any, resources: dict[str, Any], cursor: str | None = None
) -> Any:
    from dagster import build_sensor_context

    with build_sensor_context(
        instance=instance,
        definitions=defs,
        resources=resources,
        sensor_name=SENSOR,
        cursor=cursor,
    ) as context:
        return sensor.evaluate_tick(context)


def start_healthy_run(instance: Any, defs: Any, materializations: int) -> None:
    """A second run of ``daily_pipeline`` in progress: started, ``materializations`` assets
    materialized, not ended — what the event log gains between two ticks on a busy night."""
    from dagster import DagsterRunStatus

    job = defs.resolve_job_def("daily_pipeline")
    graph = defs.resolve_asset_graph()
    keys = [key for key in graph.get_all_asset_keys() if graph.get(key).is_executable]
    materialized, _, _, run_event = _events(job.name)
    with cached_sqlite_engines():
        run = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)
        instance.report_dagster_event(run_event("RUN_START"), run_id=run.run_id)
        for key in keys[:materializations]:
            instance.report_dagster_event(materialized(key), run_id=run.run_id)


def steady_ticks(
    instance: Any,
    defs: Any,
    sensor: Any,
    resources: dict[str, Any],
    counter: QueryCounter,
    evaluations: int,
) -> list[dict[str, Any]]:
    """Ticks after the first: the cursor of a full-read tick, then a healthy run's events (its
    planned events and ``STEADY_MATERIALIZATIONS`` materializations) and nothing failed."""
    first = _evaluate(instance, defs, sensor, resources)
    start_healthy_run(instance, defs, STEADY_MATERIALIZATIONS)
    ticks = []
    for _ in range(evaluations):
        counter.reset()
        started = time.perf_counter()
        data = _evaluate(instance, defs, sensor, resources, cursor=first.cursor)
        ticks.append(
            {
                "seconds": time.perf_counter() - started,
                "storage_calls": sum(counter.calls.values()),
                "by_method": dict(sorted(counter.calls.items())),
                "sql_statements": counter.sql_statements,
                "run_requests": len(data.run_requests or ()),
                "skip_message": data.skip_message,
            }
        )
    return ticks


def profile_tick(action: Callable[[], object], top: int = 15) -> list[str]:
    """Where one more evaluation spends its time: the top functions by cumulative time, to
    explain a missed target (profiling slows it down, so it is not one of the timed ticks)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(action)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda item: item[1][3], reverse=True)
    lines = []
    for (path, line, name), (_, calls, _, cumulative, _) in rows[: top * 3]:
        if "site-packages" in path or "/orchestration/" in path:
            short = path.split("site-packages/")[-1].split("/work/main/")[-1]
            lines.append(f"{cumulative * 1000:8.1f} ms {calls:>7} calls  {short}:{line} {name}")
    return lines[:top]


@contextlib.contextmanager
def cached_sqlite_engines() -> Iterator[None]:
    """Make Dagster's SQLite event log reuse one engine per shard while synthesizing.

    The stock ``SqliteEventLogStorage._connect`` creates (and disposes) a SQLAlchemy engine for
    every connection, i.e. for every event written; the SQL it runs is unchanged here. Restored
    on exit, so the sensor tick is measured on the stock storage.
    """
    import sqlalchemy
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    original = SqliteEventLogStorage._connect
    engines: dict[str, Any] = {}

    @contextlib.contextmanager
    def connect(self: Any, shard: str) -> Iterator[Any]:
        with self._db_lock:
            engine = engines.get(shard)
            if engine is None:
                engine = engines[shard] = sqlalchemy.create_engine(
                    self.conn_string_for_shard(shard), poolclass=sqlalchemy.pool.StaticPool
                )
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    SqliteEventLogStorage._connect = connect  # type: ignore[method-assign]
    try:
        yield
    finally:
        SqliteEventLogStorage._connect = original  # type: ignore[method-assign]
        for engine in engines.values():
            engine.dispose()


def _no_fsync(dbapi_connection: Any, _: Any) -> None:
    """Synthesis only, SQLite only (the PostgreSQL test server runs with fsync off already)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=OFF")


def probe(evaluations: int) -> None:
    """Inside the subprocess: synthesize, then evaluate the sensor ``evaluations`` times."""
    import sqlalchemy
    from dagster import DagsterInstance

    from benchmarks.generate import SyntheticGraph
    from orchestration.definitions import build_definitions
    from orchestration.settings import load_settings

    settings = load_settings()
    graph = SyntheticGraph.from_dict(
        json.loads((settings.dbt_project_dir / "graph.json").read_text())
    )
    rng = random.Random(0)
    failures = set(rng.sample(graph.models[len(graph.layers[0]) // 2 :], FAILURES))
    needed = graph.downstream(failures)

    started = time.perf_counter()
    defs = build_definitions()
    defs.get_repository_def()
    load_s = time.perf_counter() - started
    result: dict[str, Any] = {"definitions_s": load_s, "failures": FAILURES, "needed": len(needed)}
    with DagsterInstance.get() as instance:
        started = time.perf_counter()
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _no_fsync)
        try:
            result.update(synthesize(instance, defs, failures, needed))
        finally:
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", _no_fsync)
        result["synthesize_s"] = time.perf_counter() - started

        try:
            sensor = defs.resolve_sensor_def(SENSOR)
        except Exception as error:  # the sensor is not defined (yet)
            result["error"] = f"{type(error).__name__}: {error}"
            print(RESULT_MARKER + json.dumps(result), flush=True)
            return
        counter = QueryCounter()
        counter.wrap(instance.run_storage, "run_storage")
        counter.wrap(instance.event_log_storage, "event_log_storage")
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", counter.on_sql)
        # As the code server does: the sensor's top-level resources, built per evaluation.
        top_level = defs.get_repository_def().get_top_level_resources()
        resources = {k: v for k, v in top_level.items() if k in sensor.required_resource_keys}
        ticks: list[dict[str, Any]] = []
        for _ in range(evaluations):
            counter.reset()
            started = time.perf_counter()
            data = _evaluate(instance, defs, sensor, resources)
            elapsed = time.perf_counter() - started
            requested = [len(r.asset_selection or ()) for r in data.run_requests or ()]
            ticks.append(
                {
                    "seconds": elapsed,
                    "storage_calls": sum(counter.calls.values()),
                    "by_method": dict(sorted(counter.calls.items())),
                    "sql_statements": counter.sql_statements,
                    "run_requests": len(requested),
                    "requested_assets": requested,
                    "skip_message": data.skip_message,
                }
            )
        result["ticks"] = ticks
        result["steady_ticks"] = steady_ticks(
            instance, defs, sensor, resources, counter, evaluations
        )
        result["profile"] = profile_tick(lambda: _evaluate(instance, defs, sensor, resources))
    print(RESULT_MARKER + json.dumps(result), flush=True)


def run(work: Path, sizes: list[int], *, repeats: int) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for n in sizes:
        project, _ = write_project(work, n)
        env = BenchEnv(project, work / "envs" / f"sensor-n{n}").reset()
        env.parse()
        progress(f"sensor n={n}: synthesizing the instance, then {repeats} evaluations")
        process = run_process(
            [sys.executable, "-m", "benchmarks.figures.sensor", "--probe", str(repeats)],
            env=env.environ(
                ORCHESTRATION_RETRY_BACKOFF_SECONDS="0", ORCHESTRATION_RETRY_SENSOR_RUNNING="1"
            ),
            cwd=REPO_ROOT,
        ).check()
        line = next(line for line in process.stdout.splitlines() if line.startswith(RESULT_MARKER))
        data = json.loads(line.removeprefix(RESULT_MARKER))
        if "error" in data:
            by_size[str(n)] = {"not_measured": data["error"]}
            progress(f"sensor n={n}: not measured ({data['error']})")
            continue
        ticks = data.pop("ticks")
        steady = data.pop("steady_ticks")
        by_size[str(n)] = {
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()},
            "tick_s": Stats.of([t["seconds"] for t in ticks]).to_dict(),
            "storage_calls": Stats.of([t["storage_calls"] for t in ticks]).to_dict(0),
            "sql_statements": Stats.of([t["sql_statements"] for t in ticks]).to_dict(0),
            "by_method": ticks[-1]["by_method"],
            "run_requests": ticks[-1]["run_requests"],
            "requested_assets": ticks[-1]["requested_assets"],
            "skip_message": ticks[-1]["skip_message"],
            "steady": {
                "tick_s": Stats.of([t["seconds"] for t in steady]).to_dict(),
                "storage_calls": Stats.of([t["storage_calls"] for t in steady]).to_dict(0),
                "sql_statements": Stats.of([t["sql_statements"] for t in steady]).to_dict(0),
                "by_method": steady[-1]["by_method"],
                "run_requests": steady[-1]["run_requests"],
                "skip_message": steady[-1]["skip_message"],
            },
        }
        progress(
            f"sensor n={n}: tick {Stats.of([t['seconds'] for t in ticks]).fmt('.3f', ' s')}, "
            f"{ticks[-1]['storage_calls']} storage calls, {ticks[-1]['sql_statements']} SQL; "
            f"steady tick {Stats.of([t['seconds'] for t in steady]).fmt('.3f', ' s')}, "
            f"{steady[-1]['storage_calls']} storage calls"
        )
    return {"target_seconds_at_10000": TARGET_SECONDS_AT_10000, "sizes": by_size}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        probe(int(sys.argv[2]))
