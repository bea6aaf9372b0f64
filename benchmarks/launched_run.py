"""Launch one re-execution the way the webserver and daemon do, and time it to its end.

``python -m benchmarks.launched_run --launcher warm|default --parent RUN --strategy FROM_FAILURE
[--tag KEY=VALUE …]``

Started by ``benchmarks.env.BenchEnv.launch_run``. Setting up is not timed — opening the
workspace (a code server, as the daemon keeps one) and, for ``warm``, loading the warm run
worker (as a daemon that has launched a run before holds one). Timed: creating the run the way
the UI's *Re-execute* creates it (its planned events included), launching it through the
instance's run launcher, and waiting for the run to end. Prints one ``BENCH_RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

POLL_SECONDS = 0.05
RUN_TIMEOUT_SECONDS = 3600


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launcher", choices=("warm", "default"), required=True)
    parser.add_argument("--parent", required=True)
    parser.add_argument("--strategy", default="FROM_FAILURE")
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE run tag")
    args = parser.parse_args()

    from dagster import DagsterInstance, DefaultRunLauncher
    from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from benchmarks.env import RESULT_MARKER
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
        parent = instance.get_run_by_id(args.parent)
        assert parent is not None, args.parent
        # The workspace's one code location (the parent may have run outside it, e.g. from a
        # benchmark's execute_job).
        (location_name,) = context.get_code_location_entries()
        location = context.get_code_location(location_name)
        (repository,) = location.get_repositories().values()
        remote_job = repository.get_full_job(parent.job_name)
        if isinstance(launcher, WarmRunLauncher):
            launcher.warm(remote_job.get_python_origin().repository_origin)

        start = time.perf_counter()
        run = instance.create_reexecuted_run(
            request_context=context,
            parent_run=parent,
            code_location=location,
            remote_job=remote_job,
            strategy=ReexecutionStrategy[args.strategy],
            extra_tags=dict(tag.split("=", 1) for tag in args.tag),
            use_parent_run_tags=True,
        )
        created = time.perf_counter()
        instance.launch_run(run.run_id, context)
        deadline = start + RUN_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            record = instance.get_run_record_by_id(run.run_id)
            if record and record.dagster_run.is_finished:
                break
            time.sleep(POLL_SECONDS)
        end = time.perf_counter()
        assert record is not None
        summary = {
            "run_id": run.run_id,
            "success": record.dagster_run.status.value == "SUCCESS",
            "wall_s": end - start,
            "create_s": created - start,
            "run_s": (record.end_time or 0) - (record.start_time or 0),
        }
    print(RESULT_MARKER + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
