"""``python -m orchestration``: prepare, run a job, inject faults, plan a recovery.

A thin adapter: argument parsing and printing here, the work in the modules it calls.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestration.errors import OrchestrationError
from orchestration.settings import REPO_ROOT, load_settings


def _dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch(exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_prepare(args: argparse.Namespace) -> int:
    from orchestration.dbt.project import prepare_manifest

    path = prepare_manifest(load_settings(), force=args.force)
    print(f"manifest: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    settings = load_settings()
    home = _dagster_home()
    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=(args.job,)
    )
    run_config = json.loads(args.config) if args.config else None
    with DagsterInstance.get() as instance:
        result = execute_job(job, instance=instance, run_config=run_config, raise_on_error=False)
    status = "SUCCESS" if result.success else "FAILURE"
    print(f"\n{args.job}: {status}  run_id={result.run_id}")
    print(f"  warehouse : {settings.duckdb_path}")
    print(f"  artifacts : {settings.artifacts_uri}/runs/{result.run_id}/")
    print(f"  dagster   : DAGSTER_HOME={home}  (see it with `make dev`)")
    if not result.success:
        print(f"  plan      : python -m orchestration plan --run-id {result.run_id}")
    return 0 if result.success or args.allow_failure else 1


def cmd_faults(args: argparse.Namespace) -> int:
    from orchestration.faults.store import FaultStore

    store = FaultStore.from_settings(load_settings())
    if args.faults_command == "inject":
        fault = store.inject(
            args.model,
            times=args.times,
            target="test" if args.test else "model",
            message=args.message,
        )
        how = f"its next {fault.remaining} execution(s)" if fault.transient else "every run"
        what = "its error-severity tests fail" if args.test else "it fails"
        print(f"Injected: {fault.model} — {what} for {how} ({store.path}).")
        print(f"  message: {fault.message}")
    elif args.faults_command == "clear":
        removed = store.clear(args.model)
        print(f"Cleared {removed} fault(s).")
    else:
        faults = store.list()
        if args.json:
            print(json.dumps([fault.__dict__ for fault in faults], indent=2))
        elif not faults:
            print("No faults injected.")
        for fault in faults:
            left = "permanent" if fault.remaining is None else f"{fault.remaining} left"
            print(f"{fault.model:<40} {fault.target:<6} {left:<10} {fault.message}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestration", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    prepare = sub.add_parser("prepare", help="parse the dbt project into target/manifest.json")
    prepare.add_argument("--force", action="store_true", help="parse even if up to date")
    prepare.set_defaults(func=cmd_prepare)

    run = sub.add_parser("run", help="run a job once on the local Dagster instance")
    run.add_argument("--job", default="daily_pipeline")
    run.add_argument("--config", help="run config as JSON")
    run.add_argument("--allow-failure", action="store_true", help="exit 0 on a failed run")
    run.set_defaults(func=cmd_run)

    faults = sub.add_parser("faults", help="inject, list and clear faults")
    fsub = faults.add_subparsers(dest="faults_command", required=True)
    inject = fsub.add_parser("inject", help="make MODEL fail with a genuine database error")
    inject.add_argument("model")
    inject.add_argument("--times", type=int, help="fail only the next N executions")
    inject.add_argument("--test", action="store_true", help="fail MODEL's data tests instead")
    inject.add_argument("--message", help="error text (default: realistic per fault kind)")
    clear = fsub.add_parser("clear", help="remove faults (all, or one model's)")
    clear.add_argument("model", nargs="?")
    listing = fsub.add_parser("list", help="show active faults")
    listing.add_argument("--json", action="store_true")
    faults.set_defaults(func=cmd_faults)

    from orchestration.recovery_cli import add_plan_command

    add_plan_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in {"run", "plan"}:
        _dagster_home()
    try:
        return args.func(args)
    except OrchestrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
