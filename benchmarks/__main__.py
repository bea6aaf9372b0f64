"""``python -m benchmarks [--quick] [--sizes 100,1000] [--repeats 3] [--out …]``.

Runs the figures on synthetic dbt projects (figure 7, batch-level recovery, runs on our own
project) and writes the raw numbers as JSON and a readable ``benchmarks/RESULTS.md``. ``make
bench`` runs the defaults (about 70 minutes on a shared, busy 2-core machine); ``--quick`` runs
every figure at small sizes in a few minutes, to check that the whole thing works, and writes to
``benchmarks/.work/`` so it never replaces the real results. Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.env import STORAGE_ENV
from benchmarks.figures import (
    instance,
    launched,
    load,
    microbatch,
    overhead,
    planner,
    recovery,
    sensor,
)
from benchmarks.timing import progress

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"

DEFAULT_SIZES = {
    # "1000s": the seeded shape, seeds loading the tables the sources read (jaffle-shop's).
    "recovery": [100, 1000, "1000s"],
    "overhead": [100, 1000, "1000s"],
    "sensor": [1000, 5000, 10000],
    "load": [1000, 10000],
    "launched": [1000],
}
QUICK_SIZES = {
    "recovery": [20, "20s"],
    "overhead": [20, "20s"],
    "sensor": [100, 300],
    "load": [100],
    "launched": [20],
}
FIGURES = (
    "planner",
    "instance",
    "sensor",
    "load",
    "overhead",
    "recovery",
    "launched",
    "microbatch",
)
"""Run order: cheap and self-contained first, so a broken environment fails fast."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (minutes)")
    parser.add_argument(
        "--sizes",
        # "1000s" = the seeded shape (benchmarks/generate.py)
        type=lambda text: [p if p.endswith("s") else int(p) for p in text.split(",") if p],
        help="model counts for every figure that builds a project (default: per figure)",
    )
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 3)")
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help=f"comma-separated subset of {', '.join(FIGURES)}; others are kept from --out",
    )
    parser.add_argument(
        "--out", type=Path, help="JSON results (default results.json; .work/ with --quick)"
    )
    parser.add_argument(
        "--markdown", type=Path, help="report (default RESULTS.md; .work/ with --quick)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="re-render RESULTS.md from --out and exit"
    )
    parser.add_argument(
        "--positions",
        type=lambda text: tuple(p for p in text.split(",") if p),
        help=f"recovery failure positions (default {','.join(recovery.POSITIONS)})",
    )
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the Dagster instance's storage: the embedded SQLite one (default) or PostgreSQL "
        "(a throwaway server from Debian's binaries, as the tests use); postgres results go to "
        "results-postgres.json / RESULTS-postgres.md",
    )
    args = parser.parse_args()
    # A quick run must never overwrite the real results the README points at.
    folder, prefix = (WORK, "quick-") if args.quick else (HERE, "")
    suffix = "-postgres" if args.storage == "postgres" else ""
    args.out = args.out or folder / f"{prefix}results{suffix}.json"
    args.markdown = args.markdown or folder / f"{prefix}RESULTS{suffix}.md"
    return args


@contextlib.contextmanager
def dagster_storage(storage: str) -> Iterator[None]:
    """Export the storage for every BenchEnv; for PostgreSQL, one server for the whole run."""
    os.environ[STORAGE_ENV] = storage
    if storage != "postgres":
        yield
        return
    from tests.postgres import SERVER_URL_ENV, open_server, stop_server

    server = open_server()
    os.environ[SERVER_URL_ENV] = (
        f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}"
    )
    try:
        yield
    finally:
        stop_server(server)


def main() -> None:
    args = parse_args()
    with dagster_storage(args.storage):
        run_figures(args)


def run_figures(args: argparse.Namespace) -> None:
    if args.report_only:
        args.markdown.write_text(report.render(json.loads(args.out.read_text())))
        return
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = {
        name: args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)[name]
        for name in DEFAULT_SIZES
    }
    selected = [name.strip() for name in args.figures.split(",") if name.strip()]
    unknown = set(selected) - set(FIGURES)
    if unknown:
        raise SystemExit(f"unknown figures: {', '.join(sorted(unknown))}")
    WORK.mkdir(exist_ok=True)

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "planner": lambda: planner.run(repeats=20 if args.quick else 100),
        "instance": lambda: instance.run(WORK, repeats=max(repeats, 3)),
        "sensor": lambda: sensor.run(WORK, sizes["sensor"], repeats=max(repeats, 3)),
        "load": lambda: load.run(WORK, sizes["load"], repeats=repeats),
        "overhead": lambda: overhead.run(WORK, sizes["overhead"], repeats=repeats),
        "recovery": lambda: recovery.run(
            WORK,
            sizes["recovery"],
            repeats=repeats,
            untagged_max_n=0 if args.quick else 100,
            positions=args.positions or (("middle",) if args.quick else recovery.POSITIONS),
        ),
        "launched": lambda: launched.run(WORK, sizes["launched"], repeats=repeats),
        "microbatch": lambda: microbatch.run(WORK),
    }
    results: dict[str, Any] = {"figures": {}, "seconds": {}}
    if args.out.is_file() and set(selected) != set(FIGURES):
        results = json.loads(args.out.read_text())  # keep the figures not re-run
    started = time.time()
    results["meta"] = report.machine_and_versions()
    results["meta"]["command"] = " ".join(
        ["python -m benchmarks"]
        + (["--quick"] if args.quick else [])
        + ([f"--sizes {','.join(map(str, args.sizes))}"] if args.sizes else [])
        + ([f"--repeats {args.repeats}"] if args.repeats else [])
        + ([f"--positions {','.join(args.positions)}"] if args.positions else [])
        + ([f"--figures {args.figures}"] if set(selected) != set(FIGURES) else [])
    )
    results["meta"]["quick"] = args.quick
    results["meta"]["storage"] = args.storage
    if args.storage != "sqlite":
        results["meta"]["command"] += f" --storage {args.storage}"
    for name in FIGURES:
        if name not in selected:
            continue
        progress(f"== {name} ==")
        figure_started = time.time()
        try:
            results["figures"][name] = runners[name]()
        except Exception as error:  # one broken figure must not cost the hour of the others
            progress(f"== {name} FAILED: {type(error).__name__}: {error}")
            results["figures"][name] = {"error": f"{type(error).__name__}: {error}"[-2000:]}
        results["seconds"][name] = round(time.time() - figure_started, 1)
        args.out.write_text(json.dumps(results, indent=1))
        progress(f"== {name} done in {results['seconds'][name] / 60:.1f} min ==")
    results["meta"]["total_seconds"] = round(time.time() - started, 1)
    results["meta"]["load_average_end"] = report.load_average()
    args.out.write_text(json.dumps(results, indent=1))
    args.markdown.write_text(report.render(results))
    progress(f"wrote {args.out} and {args.markdown} in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":  # the multiprocess executor re-imports __main__
    main()
