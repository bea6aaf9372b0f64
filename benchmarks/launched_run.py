"""Launch one recovery run the way the webserver and daemon do, and time it to its end.

``python -m benchmarks.launched_run --launcher warm|default [--parent RUN] --strategy S
[--tag KEY=VALUE …] [--request FILE] [--job NAME]``

Strategies, each created as Dagster's own code creates that run:

- ``FROM_FAILURE`` / ``FROM_ASSET_FAILURE``: the UI's *Re-execute* (``create_reexecuted_run``,
  its planned events included);
- ``SENSOR_RETRY``: the run ``retry_failed_assets_sensor`` requested for the failed run (read
  from ``--request``, written once by ``--write-sensor-request FILE`` right after the failure),
  created as the sensor daemon creates a run request (``_create_sensor_run``: the asset subset
  of the implicit asset job, its execution plan from the code server, ``create_run``);
- ``ARTIFACTS``: ``recover_from_artifacts`` with ``retry_from_run_id``, created as the UI's
  launchpad creates a run of a job with config (the same steps, the whole job);
- ``JOB``: a plain run of ``--job`` (no parent), created as the schedule daemon creates a
  scheduled run (figure 3's launched full build).

Started by ``benchmarks.env.BenchEnv.launch_run``. Setting up is not timed — opening the
workspace (a code server, as the daemon keeps one) and, for ``warm``, loading the warm run
worker (as a daemon that has launched a run before holds one). Timed: creating the run,
launching it through the instance's run launcher, and waiting for the run to end. Prints one
``BENCH_RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.5
"""How often the run's record is read while waiting. A run ends when its worker writes the end
(the record's ``end_time``), so the interval adds nothing to the figure; reading the record is
not free (the stock SQLite run storage inspects its columns on every read), and at 20 reads a
second it took 12% of a core from the run it watched."""
RUN_TIMEOUT_SECONDS = 3600
SPARE_SETTLE_SECONDS = 1.0
"""Untimed wait after loading the warm worker: a daemon that has launched a run before holds a
worker whose spare child has opened its instance (~0.2 s after the worker answers). Without
it, the spare's opening would run during the timed creation, which it never does in
production (``orchestration.instance.warm_worker``)."""


SENSOR = "retry_failed_assets_sensor"
ASSET_JOB = "__ASSET_JOB"
"""The implicit job a sensor's asset-selection run request runs in (Dagster's name)."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launcher", choices=("warm", "default"), default="warm")
    parser.add_argument("--parent", help="the failed run (every strategy but JOB)")
    parser.add_argument("--job", default="daily_pipeline", help="the job of JOB")
    parser.add_argument(
        "--strategy",
        default="FROM_FAILURE",
        choices=("FROM_FAILURE", "FROM_ASSET_FAILURE", "SENSOR_RETRY", "ARTIFACTS", "JOB"),
    )
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE run tag")
    parser.add_argument("--request", type=Path, help="the sensor's run request (SENSOR_RETRY)")
    parser.add_argument(
        "--write-sensor-request",
        type=Path,
        help="evaluate the retry sensor once, write its run request for --parent, and exit",
    )
    args = parser.parse_args()
    if args.write_sensor_request:
        write_sensor_request(args.parent, args.write_sensor_request)
        return
    from benchmarks.env import RESULT_MARKER

    print(RESULT_MARKER + json.dumps(launch(args)), flush=True)


def launch(args: argparse.Namespace) -> dict[str, object]:
    from dagster import DagsterInstance, DefaultRunLauncher
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from orchestration.instance.run_launcher import WarmRunLauncher
    from orchestration.settings import REPO_ROOT

    with (
        DagsterInstance.get() as instance,
        WorkspaceProcessContext(
            instance, WorkspaceFileTarget([str(Path(REPO_ROOT) / "workspace.yaml")])
        ) as process_context,
    ):
        launcher = WarmRunLauncher() if args.launcher == "warm" else DefaultRunLauncher()
        launcher.register_instance(instance)
        instance._run_launcher = launcher  # noqa: SLF001 - the launcher under test, not the yaml's
        context = process_context.create_request_context()
        parent = instance.get_run_by_id(args.parent) if args.parent else None
        assert parent is not None or args.strategy == "JOB", args.parent
        # The workspace's one code location (the parent may have run outside it, e.g. from a
        # benchmark's execute_job).
        (location_name,) = context.get_code_location_entries()
        location = context.get_code_location(location_name)
        (repository,) = location.get_repositories().values()
        tags = dict(tag.split("=", 1) for tag in args.tag)
        create = _creator(args, instance, context, location, repository, parent, tags)
        if isinstance(launcher, WarmRunLauncher):
            job = repository.get_full_job(parent.job_name if parent else args.job)
            launcher.warm(job.get_python_origin().repository_origin)
            time.sleep(SPARE_SETTLE_SECONDS)

        start, start_epoch = time.perf_counter(), time.time()
        run = create()
        created = time.perf_counter()
        instance.launch_run(run.run_id, context)
        deadline = start + RUN_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            record = instance.get_run_record_by_id(run.run_id)
            if record and record.dagster_run.is_finished:
                break
            time.sleep(POLL_SECONDS)
        observed = time.perf_counter() - start
        assert record is not None
        return {
            "run_id": run.run_id,
            "success": record.dagster_run.status.value == "SUCCESS",
            # From creating the run to the end its worker recorded (same clock, same machine).
            "wall_s": record.end_time - start_epoch if record.end_time else observed,
            "create_s": created - start,
            "run_s": (record.end_time or 0) - (record.start_time or 0),
        }


def _creator(
    args: argparse.Namespace,
    instance: Any,
    context: Any,
    location: Any,
    repository: Any,
    parent: Any,
    tags: dict[str, str],
) -> Callable[[], Any]:
    """What creates the run, set up untimed (the sensor's request read, the job fetched)."""
    from dagster._core.execution.plan.resume_retry import ReexecutionStrategy

    if args.strategy == "SENSOR_RETRY":
        request = json.loads(args.request.read_text())
        return functools.partial(
            create_like_daemon,
            instance,
            location,
            repository,
            job_name=ASSET_JOB,
            run_config=request["run_config"],
            tags={**request["tags"], **tags},
            asset_keys=request["asset_keys"],
        )
    if args.strategy == "JOB":
        return functools.partial(
            create_like_daemon,
            instance,
            location,
            repository,
            job_name=args.job,
            run_config={},
            tags=tags,
            asset_keys=None,
        )
    if args.strategy == "ARTIFACTS":
        from benchmarks.env import BenchEnv

        config = BenchEnv.artifacts_run_config(parent.run_id)
        return functools.partial(
            create_like_daemon,
            instance,
            location,
            repository,
            job_name="recover_from_artifacts",
            run_config=config,
            tags=tags,
            asset_keys=None,
        )
    remote_job = repository.get_full_job(parent.job_name)
    return functools.partial(
        instance.create_reexecuted_run,
        request_context=context,
        parent_run=parent,
        code_location=location,
        remote_job=remote_job,
        strategy=ReexecutionStrategy[args.strategy],
        extra_tags=tags,
        use_parent_run_tags=True,
    )


def create_like_daemon(
    instance: Any,
    location: Any,
    repository: Any,
    *,
    job_name: str,
    run_config: dict[str, Any],
    tags: dict[str, str],
    asset_keys: list[list[str]] | None,
) -> Any:
    """A run created as the sensor daemon creates one for a run request (``_create_sensor_run``
    in ``dagster._daemon.sensor``, 1.13.27; the schedule daemon's is the same), and as the
    launchpad creates a run of a job: the (subset) job from the code server, its execution
    plan, ``create_run``."""
    from dagster import AssetKey, DagsterRunStatus
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.utils import make_new_run_id

    selection = [AssetKey(key) for key in asset_keys] if asset_keys is not None else None
    remote_job = location.get_job(
        JobSubsetSelector(
            location_name=location.name,
            repository_name=repository.name,
            job_name=job_name,
            op_selection=None,
            asset_selection=selection,
        )
    )
    plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    )
    return instance.create_run(
        job_name=job_name,
        run_id=make_new_run_id(),
        run_config=run_config,
        resolved_op_selection=remote_job.resolved_op_selection,
        step_keys_to_execute=None,
        status=DagsterRunStatus.NOT_STARTED,
        op_selection=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**(remote_job.run_tags or {}), **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=frozenset(selection) if selection is not None else None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )


def write_sensor_request(parent_run_id: str, path: Path) -> None:
    """Evaluate ``retry_failed_assets_sensor`` once, as the code server does, and keep its run
    request for ``parent_run_id``: the retry the daemon would create (the run's tags name it)."""
    from dagster import DagsterInstance, build_sensor_context

    from orchestration.definitions import build_definitions

    defs = build_definitions()
    sensor = defs.get_sensor_def(SENSOR)
    top_level = defs.get_repository_def().get_top_level_resources()
    resources = {k: v for k, v in top_level.items() if k in sensor.required_resource_keys}
    with (
        DagsterInstance.get() as instance,
        build_sensor_context(
            instance=instance, definitions=defs, resources=resources, sensor_name=SENSOR
        ) as context,
    ):
        result = sensor.evaluate_tick(context)
    requests = [
        request for request in result.run_requests or () if parent_run_id in request.tags.values()
    ]
    if len(requests) != 1:
        reason = result.skip_message or [r.tags for r in result.run_requests or ()]
        raise RuntimeError(f"the retry sensor requested no one retry of {parent_run_id}: {reason}")
    (request,) = requests
    path.write_text(
        json.dumps(
            {
                "asset_keys": [key.path for key in request.asset_selection or ()],
                "tags": dict(request.tags),
                "run_config": request.run_config,
            }
        )
    )


if __name__ == "__main__":
    main()
