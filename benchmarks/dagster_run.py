"""Run one job of our Definitions in this process, like a Dagster run worker would.

``python -m benchmarks.dagster_run --job daily_pipeline [--config JSON] [--from-failure RUN]``

Started by ``benchmarks.env.BenchEnv.run_job`` in a fresh interpreter so that each measured run
pays what a real run pays (imports, loading definitions, opening the instance). ``--from-failure``
re-executes a run from failure as Python calls it (``ReexecutionOptions.from_failure``); with
``--tag dagster/is_resume_retry=true`` it is exactly what the UI's *Re-execute → From failure*
launches. Prints one ``BENCH_RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--config", help="run config as JSON")
    parser.add_argument("--from-failure", help="re-execute this run from failure")
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE run tag")
    args = parser.parse_args()

    from dagster import DagsterEventType, DagsterInstance, ReexecutionOptions, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    from benchmarks.env import RESULT_MARKER

    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=(args.job,)
    )
    with DagsterInstance.get() as instance:
        options = (
            ReexecutionOptions.from_failure(args.from_failure, instance)
            if args.from_failure
            else None
        )
        result = execute_job(
            job,
            instance=instance,
            run_config=json.loads(args.config) if args.config else None,
            reexecution_options=options,
            tags=dict(tag.split("=", 1) for tag in args.tag) or None,
            raise_on_error=False,
        )
        record = instance.get_run_record_by_id(result.run_id)
        run_s = (
            record.end_time - record.start_time
            if record and record.start_time and record.end_time
            else float("nan")
        )
        planned = len(
            instance.get_records_for_run(
                result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=100_000
            ).records
        )
    summary = {
        "run_id": result.run_id,
        "success": result.success,
        "run_s": run_s,
        "planned_assets": planned,
    }
    print(RESULT_MARKER + json.dumps(summary), flush=True)


if __name__ == "__main__":  # the multiprocess executor re-imports __main__
    main()
