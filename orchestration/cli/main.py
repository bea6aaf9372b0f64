"""``python -m orchestration``: prepare, run a job, inject faults, plan a recovery.

A thin adapter: argument parsing and printing here, the work in the modules it calls.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.errors import OrchestrationError
from orchestration.settings import REPO_ROOT, Settings, load_settings

if TYPE_CHECKING:
    from orchestration.cli.summary import RunSummary


def _dagster_home() -> Path:
    """``DAGSTER_HOME`` (default ``.dagster_home/``), with the embedded instance's
    ``dagster.yaml`` written if it has none (``orchestration.instance.config``)."""
    from orchestration.instance.config import ensure_instance_config

    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home")
    ensure_instance_config(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_prepare(args: argparse.Namespace) -> int:
    from orchestration.dbt.project import prepare_manifest

    path = prepare_manifest(load_settings(), force=args.force)
    print(f"manifest: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a job; dbt's progress on the terminal, Dagster's events in a log file, a summary."""
    from orchestration.cli.summary import RunSummary

    settings = load_settings()
    home = _dagster_home()
    log_file = None if args.verbose else _run_log_path(home, args.job)
    summary = RunSummary(job=args.job, status="ERROR", run_id=None, dagster_home=home)
    if log_file is not None:
        print(f"Dagster's event log for this run: {log_file}", flush=True)
    try:
        with _stderr_to(log_file):
            result = _execute(args.job, json.loads(args.config) if args.config else None)
        summary.status = "SUCCESS" if result.success else "FAILURE"
        summary.run_id = result.run_id
    except Exception as error:  # a summary, not a traceback: the log file has the details
        summary.error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        if log_file is not None:
            with log_file.open("a") as handle:
                traceback.print_exc(file=handle)
    _describe_run(summary, settings, log_file)
    print("\n" + "\n".join(summary.lines()), flush=True)
    return 0 if summary.status == "SUCCESS" or args.allow_failure else 1


def _execute(job_name: str, run_config: dict | None) -> object:
    from dagster import DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import build_reconstructable_job

    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=(job_name,)
    )
    with DagsterInstance.get() as instance:
        return execute_job(job, instance=instance, run_config=run_config, raise_on_error=False)


def _run_log_path(home: Path, job: str) -> Path:
    folder = home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return folder / f"{job}-{stamp}-{os.getpid()}.log"


@contextlib.contextmanager
def _stderr_to(path: Path | None) -> Iterator[None]:
    """Send file descriptor 2 (Dagster's console logger, warnings, child processes' stderr)
    to ``path`` while the run executes; dbt's progress is on stdout and stays visible."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as handle:
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _describe_run(summary: RunSummary, settings: Settings, log_file: Path | None) -> None:
    """Fill in what the summary says about dbt's results, the warehouse and the artifacts."""
    from orchestration.artifacts.store import open_store
    from orchestration.dbt.profile import resolve_warehouse
    from orchestration.history.runs import stored_run_results

    summary.log_file = log_file
    warehouse = resolve_warehouse(settings)
    summary.warehouse = warehouse.describe() if warehouse else "unresolved (see profiles.yml)"
    if summary.run_id:
        summary.artifacts = f"{settings.artifacts_uri.rstrip('/')}/runs/{summary.run_id}/"
        stored = stored_run_results(open_store(settings.artifacts_uri), summary.run_id)
        summary.results = stored.results
        summary.notes += stored.warnings


def cmd_faults(args: argparse.Namespace) -> int:
    from orchestration.faults.store import FaultStore

    store = FaultStore.from_settings(load_settings())
    if args.faults_command == "inject":
        fault = store.inject(
            args.model,
            times=args.times,
            target="test" if args.test else "model",
            message=args.message,
            batch=args.batch,
        )
        how = f"its next {fault.remaining} execution(s)" if fault.transient else "every run"
        what = "its error-severity tests fail" if args.test else "it fails"
        if fault.batch:
            what = f"its microbatch of {fault.batch} fails"
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
            target = f"batch {fault.batch}" if fault.batch else fault.target
            print(f"{fault.model:<40} {target:<16} {left:<10} {fault.message}")
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
    run.add_argument(
        "--verbose", action="store_true", help="Dagster's event stream on the terminal, no log file"
    )
    run.set_defaults(func=cmd_run)

    faults = sub.add_parser("faults", help="inject, list and clear faults")
    fsub = faults.add_subparsers(dest="faults_command", required=True)
    inject = fsub.add_parser("inject", help="make MODEL fail with a genuine database error")
    inject.add_argument("model")
    inject.add_argument("--times", type=int, help="fail only the next N executions")
    inject.add_argument("--test", action="store_true", help="fail MODEL's data tests instead")
    inject.add_argument("--message", help="error text (default: realistic per fault kind)")
    inject.add_argument(
        "--batch",
        metavar="YYYY-MM-DD",
        help="fail only this day's microbatches of MODEL (a dbt microbatch model)",
    )
    clear = fsub.add_parser("clear", help="remove faults (all, or one model's)")
    clear.add_argument("model", nargs="?")
    listing = fsub.add_parser("list", help="show active faults")
    listing.add_argument("--json", action="store_true")
    faults.set_defaults(func=cmd_faults)

    from orchestration.cli.plan import add_plan_command

    add_plan_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in {"run", "plan", "prepare"}:
        _dagster_home()
    try:
        return args.func(args)
    except OrchestrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
