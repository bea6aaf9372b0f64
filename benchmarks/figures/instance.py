"""Figure 8: what one event costs the instance, and what the embedded defaults change.

The levers of ``orchestration/instance/``, measured side by side on one machine: Dagster's stock
SQLite event log, the project's ``EmbeddedSqliteEventLogStorage`` (one engine per shard, batched
writes in one transaction), and PostgreSQL (``dagster-postgres``, the production storage), each
with ``DAGSTER_EVENT_BATCH_SIZE`` unset and set. The job is plain Dagster, shaped like the dbt op:
one multi-asset of ``ASSETS`` assets and ``CHECKS`` blocking checks, so the figures are the
instance's alone (no dbt, no manifest).

- *planned at run creation*: ``instance.create_run_for_job`` — a planned event per asset and
  check, what a step-level re-execution (UI *From failure*) writes before the run is queued;
- *per event*: ``MATERIALIZATIONS`` materializations written one by one, as a run worker does
  for every dbt model it reports.

Each configuration runs in its own process with a fresh ``DAGSTER_HOME`` (and database).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.env import RESULT_MARKER
from benchmarks.timing import Stats, progress, run_process
from orchestration.instance.config import event_log_storage_yaml
from orchestration.settings import REPO_ROOT

ASSETS = 1000
CHECKS = 400
MATERIALIZATIONS = 300
STORAGES = ("sqlite (stock)", "sqlite (embedded)", "postgres (stock)", "postgres (pooled)")
PASSWORD_ENV = "BENCH_DAGSTER_PG_PASSWORD"


def probe(repeats: int) -> None:
    """Inside the subprocess: create ``repeats`` runs, then write the materializations."""
    from dagster import (
        AssetCheckSpec,
        AssetMaterialization,
        AssetSpec,
        DagsterInstance,
        DagsterRunStatus,
        Definitions,
        define_asset_job,
        multi_asset,
    )
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    specs = [AssetSpec(f"m{i:05d}", deps=[f"m{i - 1:05d}"] if i else []) for i in range(ASSETS)]
    checks = [AssetCheckSpec("not_null", asset=f"m{i:05d}", blocking=True) for i in range(CHECKS)]

    @multi_asset(specs=specs, check_specs=checks, can_subset=True, name="dbt_models")
    def models():  # noqa: ANN202 -- never executed: only its shape matters
        return None

    job = Definitions(assets=[models], jobs=[define_asset_job("j")]).resolve_job_def("j")
    result: dict[str, Any] = {"create_run_s": []}
    with DagsterInstance.get() as instance:
        run = None
        for _ in range(repeats):
            started = time.perf_counter()
            run = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)
            result["create_run_s"].append(time.perf_counter() - started)
        assert run is not None
        started = time.perf_counter()
        for spec in specs[:MATERIALIZATIONS]:
            event = DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=job.name,
                step_key="dbt_models",
                event_specific_data=StepMaterializationData(AssetMaterialization(spec.key)),
            )
            instance.report_dagster_event(event, run_id=run.run_id)
        result["ms_per_event"] = (time.perf_counter() - started) * 1000 / MATERIALIZATIONS
        planned = instance.get_records_for_run(
            run.run_id, of_type={DagsterEventType.ASSET_MATERIALIZATION_PLANNED}, limit=ASSETS + 1
        ).records
        result["planned_events_stored"] = len(planned)
    print(RESULT_MARKER + json.dumps(result), flush=True)


def _dagster_yaml(storage: str, home: Path, database: Any) -> str:
    text = "telemetry:\n  enabled: false\n"
    if storage == "sqlite (embedded)":
        text += event_log_storage_yaml(home)
    elif storage.startswith("postgres"):
        text += database.dagster_storage_yaml(PASSWORD_ENV, pooled=storage.endswith("(pooled)"))
    return text


def run(work: Path, *, repeats: int) -> dict[str, Any]:
    from tests.postgres import open_server, stop_server

    server = open_server()
    rows: dict[str, Any] = {}
    try:
        for storage in STORAGES:
            for batch in ("0", "1000"):
                label = f"{storage}, batch {batch}"
                home = work / "instance" / f"{storage.split()[0]}-{len(rows)}"
                if home.exists():
                    shutil.rmtree(home)
                home.mkdir(parents=True)
                database = (
                    server.create_database("bench") if storage.startswith("postgres") else None
                )
                (home / "dagster.yaml").write_text(_dagster_yaml(storage, home, database))
                env = {
                    **os.environ,
                    "DAGSTER_HOME": str(home),
                    "DAGSTER_EVENT_BATCH_SIZE": batch,
                    "PYTHONPATH": str(REPO_ROOT),
                    PASSWORD_ENV: database.password if database else "",
                }
                progress(f"instance: {label}")
                process = run_process(
                    [sys.executable, "-m", "benchmarks.figures.instance", "--probe", str(repeats)],
                    env=env,
                    cwd=REPO_ROOT,
                ).check()
                line = next(
                    line for line in process.stdout.splitlines() if line.startswith(RESULT_MARKER)
                )
                data = json.loads(line.removeprefix(RESULT_MARKER))
                rows[label] = {
                    "storage": storage,
                    "batch": int(batch),
                    "create_run_s": Stats.of(data["create_run_s"]).to_dict(),
                    "ms_per_event": round(data["ms_per_event"], 2),
                    "planned_events_stored": data["planned_events_stored"],
                }
                progress(
                    f"instance: {label}: create_run "
                    f"{Stats.of(data['create_run_s']).fmt('.2f', ' s')}, "
                    f"{data['ms_per_event']:.2f} ms per materialization"
                )
    finally:
        stop_server(server)
    return {"assets": ASSETS, "checks": CHECKS, "materializations": MATERIALIZATIONS, "rows": rows}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        probe(int(sys.argv[2]))
