"""RESULTS.md from results.json: the machine, the versions, one table per figure, and the
targets missed, by how much. Every number and claim comes from results.json: nothing here states
a cause or a fix that was not measured.

Rendering is separate from measuring so the text can be fixed and re-rendered
(``python -m benchmarks --report-only``) without re-running an hour of benchmarks.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.generate import parse_size
from benchmarks.timing import Stats

PACKAGES = ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _proc_field(path: str, name: str, pick: Callable[[str], str]) -> str | None:
    """The first ``name: value`` line of a /proc file (Linux; None elsewhere)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(name):
                    return pick(line.split(":", 1)[1].strip())
    except OSError:
        return None
    return None


def machine_and_versions() -> dict[str, Any]:
    cpu = _proc_field("/proc/cpuinfo", "model name", lambda value: value) or "unknown"
    kib = _proc_field("/proc/meminfo", "MemTotal", lambda value: value.split()[0])
    memory_gb = round(int(kib) / 2**20, 1) if kib else 0.0
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": memory_gb,
            "cpu": cpu,
            "platform": platform.platform(),
        },
        "load_average_start": load_average(),
        "versions": {
            "python": platform.python_version(),
            **{name: importlib.metadata.version(name) for name in PACKAGES},
        },
    }


def fmt(stats: Mapping[str, Any], spec: str = ".2f", unit: str = "") -> str:
    """``median (min–max)``; a single measurement shows just its value."""
    median, low, high = stats["median"], stats["min"], stats["max"]
    if low == high:
        return f"{median:{spec}}{unit}"
    return f"{median:{spec}}{unit} ({low:{spec}}–{high:{spec}})"


def size_label(size: str) -> str:
    """ "1,000" for a plain synthetic project, "1,000 seeded" when seeds feed its sources."""
    n, seeded = parse_size(size)
    return f"{n:,} seeded" if seeded else f"{n:,}"


def by_size(sizes: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Rows in model-count order (JSON keys are strings, and may come back sorted as text)."""
    return sorted(sizes.items(), key=lambda item: parse_size(item[0]))


def by_position(positions: Mapping[str, Any]) -> list[tuple[str, Any]]:
    order = ("roots", "middle", "leaves")
    return sorted(positions.items(), key=lambda item: order.index(item[0]))


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _storage_text(storage: str) -> str:
    if storage == "postgres":
        return "**PostgreSQL** storage (dagster-postgres, a local server from Debian's binaries)"
    return (
        "the **embedded SQLite** instance as `make run` writes it (`EmbeddedSqliteEventLogStorage`)"
    )


def render(results: Mapping[str, Any]) -> str:
    meta = results["meta"]
    figures = results.get("figures", {})
    machine, versions = meta["machine"], meta["versions"]
    lines = [
        "# Benchmarks: the cost of recovery against the alternatives",
        "",
        f"- **Date**: {meta['date']}, `{meta.get('command', 'python -m benchmarks')}`"
        + (f", {meta['total_seconds'] / 60:.0f} min in all" if meta.get("total_seconds") else ""),
        f"- **Machine**: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gb']} GB, "
        f"{machine['platform']}; load average {meta.get('load_average_start')} at the start, "
        f"{meta.get('load_average_end')} at the end",
        "- **Versions**: " + ", ".join(f"{name} {value}" for name, value in versions.items()),
        "- **Method**: synthetic dbt projects on DuckDB (`benchmarks/generate.py`: layered DAG, "
        "1–3 parents per model, heavy-tailed fan-out, tables, `not_null`/`unique` tests, the "
        "fault hook), deterministic by seed; dbt with 2 threads; Dagster in a fresh "
        f"`DAGSTER_HOME` on {_storage_text(meta.get('storage', 'sqlite'))}, "
        "`DAGSTER_EVENT_BATCH_SIZE=1000` as `make` exports it. Every process is timed whole "
        "(a run worker and a `dbt` command both start cold), except where a figure says "
        "*warm*: a run forked from the warm run worker, whose dbt is forked from the worker's "
        "dbt fork server (dbt imported once; `orchestration/dbt/fork_server.py`), against a "
        "floor that is a fresh `dbt`. Cells read *median (min–max)* of the repeats; ratios are "
        "taken per repeat between measurements made side by side.",
        "",
    ]
    if meta.get("quick"):
        lines += [
            "> **Quick mode**: tiny sizes and one repeat, to check the benchmarks run. These "
            "numbers say nothing about scale; run `make bench` for the real table.",
            "",
        ]
    missed: list[str] = []
    sections = (
        ("recovery", _recovery),
        ("overhead", _overhead),
        ("sensor", _sensor),
        ("load", _load),
        ("planner", _planner),
        ("instance", _instance),
        ("launched", _launched),
        ("microbatch", _microbatch),
    )
    for name, section in sections:
        if name in figures and "error" in figures[name]:
            lines += [f"## {name}", "", "Failed in this run:", "", "```", figures[name]["error"]]
            lines += ["```", ""]
            missed.append(f"- **{name}**: not measured, the figure failed (see above).")
        elif name in figures:
            lines += section(figures[name], missed)
        else:
            lines += [f"## {name}", "", "Not measured in this run.", ""]
    lines += ["## Missed targets", ""]
    lines += missed or ["None: every target above was met."]
    lines.append("")
    return "\n".join(lines)


def _recovery(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    lines = [
        "## 1. Recovery work: models executed ÷ models that had to run",
        "",
        "One real failed `daily_pipeline` run per row (a transient fault in the named model); "
        "*needed* = the failed model ∪ its downstream, from the generator's own edges. Ours: "
        "*From failure* as the UI launches it (`ReexecutionOptions.from_failure` + tag "
        "`dagster/is_resume_retry=true`), `recover_from_artifacts` with `retry_from_run_id`, "
        "and the planner's set (`python -m orchestration plan --json`). Dagster's native "
        "step-level *From failure* re-runs the whole dbt op: N models (computed). `dbt retry` "
        "is the real command on the failed run's stored artifacts (`--state`, with "
        "`--vars '{}'` so the cleared fault stays cleared). Target for ours: exactly 1.00.",
        "",
        "| models | failure near | failed model | needed | ours: From failure | "
        "ours: from artifacts | ours: planner | Dagster native From failure | dbt retry |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    untagged_rows: list[str] = []
    untagged_missed: list[str] = []
    for n, positions in by_size(data["sizes"]):
        for position, row in by_position(positions):
            paths = row["paths"]

            def cell(path: Mapping[str, Any]) -> str:
                exact = " exact" if path["exactly_the_needed_set"] else " (set differs)"
                return fmt(path["work_ratio"]) + exact

            lines.append(
                f"| {size_label(n)} | {position} | {row['failed_model']} | {row['needed']} | "
                f"{cell(paths['ours_from_failure'])} | {cell(paths['ours_from_artifacts'])} | "
                f"{row['planner']['work_ratio']:.2f}"
                f"{' exact' if row['planner']['exactly_the_needed_set'] else ' (set differs)'} | "
                f"{row['dagster_native_from_failure']['work_ratio']:.2f} | "
                f"{cell(paths['dbt_retry'])} |"
            )
            for name in ("ours_from_failure", "ours_from_artifacts"):
                ratio = paths[name]["work_ratio"]
                if not (
                    paths[name]["exactly_the_needed_set"] and ratio["min"] == ratio["max"] == 1
                ):
                    missed.append(
                        f"- **Figure 1, {name} at {size_label(n)} models, "
                        f"failure near {position}**: "
                        f"work ratio {fmt(paths[name]['work_ratio'])} instead of exactly 1.00 "
                        f"(executed {paths[name]['executed']} of {row['needed']})."
                    )
            untagged = paths.get("ours_from_failure_python_untagged")
            if untagged:
                untagged_rows.append(
                    f"| {size_label(n)} | {position} | {row['needed']} | "
                    f"{untagged['executed'][0]} | {fmt(untagged['work_ratio'])} |"
                )
                if untagged["work_ratio"]["max"] != 1.0:
                    untagged_missed.append(
                        f"{size_label(n)} models near {position}: "
                        f"{untagged['executed'][0]} run for "
                        f"{row['needed']} needed ({untagged['work_ratio']['median']:.2f}×)"
                    )
    if untagged_missed:
        missed.append(
            "- **Figure 1, *From failure* launched from Python without the UI's tag**: "
            + "; ".join(untagged_missed)
            + "."
        )
    lines.append("")
    if untagged_rows:
        lines += [
            "*From failure* launched from Python without the UI's tag "
            "(`execute_job(reexecution_options=ReexecutionOptions.from_failure(...))`), "
            "measured once per row:",
            "",
            "| models | failure near | needed | executed | ratio |",
            "|---:|---|---:|---:|---:|",
            *untagged_rows,
            "",
        ]
    lines += _recovery_time(data, missed)
    return lines


def _recovery_time(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    target = data["target_time_ratio"]
    lines = [
        "## 2. Recovery time: our recovery run ÷ `dbt build --select <exactly the needed set>`",
        "",
        f"Whole-process wall time, {data['repeats']} side-by-side repeats (the secondary paths "
        f"{data['secondary_repeats']}×). Target ≤ {target:.2f}.",
        "",
        "| models | failure near | needed | ours: From failure | floor: dbt build --select | "
        "ratio | target | Dagster run only | ours − floor | assets the run planned | "
        "from artifacts ÷ floor | dbt retry ÷ floor |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    gaps: list[float] = []
    for n, positions in by_size(data["sizes"]):
        for position, row in by_position(positions):
            ours = row["paths"]["ours_from_failure"]
            floor = row["floor_dbt_build_select"]
            ratio = row["time_ratio"]["ours_from_failure"]
            gap = ours["wall_s"]["median"] - floor["wall_s"]["median"]
            gaps.append(gap)
            lines.append(
                f"| {size_label(n)} | {position} | {row['needed']} | "
                f"{fmt(ours['wall_s'], '.1f')} s | "
                f"{fmt(floor['wall_s'], '.1f')} s | {fmt(ratio)} | "
                f"{mark(ratio['median'] <= target)} | "
                f"{fmt(ours.get('dagster_run_s', ours['wall_s']), '.1f')} s | {gap:.1f} s | "
                f"{max(ours.get('planned_assets') or [0]) or 'not recorded'} | "
                f"{fmt(row['time_ratio']['ours_from_artifacts'])} | "
                f"{fmt(row['time_ratio']['dbt_retry'])} |"
            )
            if ratio["median"] > target:
                missed.append(
                    f"- **Figure 2 at {size_label(n)} models, failure near {position}** "
                    f"({row['needed']} models to rebuild): {ratio['median']:.2f}× the floor "
                    f"against ≤ {target:.2f} — {ratio['median'] / target - 1:.0%} over; our "
                    f"run took {gap:.1f} s more than dbt alone."
                )
    lines.append("")
    if any(item.startswith("- **Figure 2") for item in missed):
        missed.append(
            f"  - Median gap over the rows: {sorted(gaps)[len(gaps) // 2]:.1f} s more than "
            "dbt alone. *Dagster run only* is the run's own duration in Dagster (start to end, "
            "without the process start-up, definitions load and run creation)."
        )
    return lines


def _overhead(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    target = data["target_ratio_at_1000"]
    lines = [
        "## 3. Orchestration overhead: full build through Dagster ÷ the same `dbt build`",
        "",
        "`execute_job(daily_pipeline)` in a fresh process on the bench instance (see *Method*) "
        f"vs `dbt build` of the same project, alternating, {data['repeats']} repeats. "
        "*Launched, warm*: the same build created and launched as the schedule daemon "
        "launches a scheduled run, through `WarmRunLauncher` (its dbt from the dbt fork "
        "server), timed from creating the run to its end. Target ≤ "
        f"{target:.2f} at 1,000 models.",
        "",
        "| models | dbt build | through Dagster | ratio | target | launched, warm | ratio | "
        "target | Dagster run only | overhead per model | stored dbt.log |",
        "|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    sizes = data["sizes"]
    for n, row in by_size(sizes):
        at_target_size = parse_size(n)[0] == 1000
        launched = row.get("launched_ratio")  # absent in results from before it was measured
        lines.append(
            f"| {size_label(n)} | {fmt(row['dbt_build_s'], '.1f')} s | "
            f"{fmt(row['dagster_process_s'], '.1f')} s | {fmt(row['ratio'])} | "
            + (mark(row["ratio"]["median"] <= target) if at_target_size else "–")
            + (
                f" | {fmt(row['launched_warm_s'], '.1f')} s | {fmt(launched)} | "
                + (mark(launched["median"] <= target) if at_target_size else "–")
                if launched
                else " | – | – | –"
            )
            + f" | {fmt(row['dagster_run_s'], '.1f')} s | "
            f"{fmt(row['per_model_overhead_ms'], '.0f')} ms | "
            f"{fmt(row['stored_dbt_log_mb'], '.1f')} MB |"
        )
    lines.append("")
    row = sizes.get("1000")
    if row and row["ratio"]["median"] > target:
        small = sizes.get("100")
        fixed = ""
        if small:
            # Two sizes give a line each side: intercept = fixed cost, slope = per model.
            d_slope = (
                row["dagster_process_s"]["median"] - small["dagster_process_s"]["median"]
            ) / 900
            b_slope = (row["dbt_build_s"]["median"] - small["dbt_build_s"]["median"]) / 900
            d_fixed = small["dagster_process_s"]["median"] - 100 * d_slope
            b_fixed = small["dbt_build_s"]["median"] - 100 * b_slope
            fixed = (
                f" From the two sizes: a fixed {d_fixed - b_fixed:.1f} s per run more than dbt "
                f"and {1000 * (d_slope - b_slope):.0f} ms more per model (dbt itself: "
                f"{1000 * b_slope:.0f} ms per model)."
            )
        missed.append(
            f"- **Figure 3 at 1,000 models**: {row['ratio']['median']:.2f}× the direct "
            f"`dbt build` against ≤ {target:.2f} — {row['ratio']['median'] / target - 1:.0%} "
            f"over.{fixed}"
        )
    launched = row.get("launched_ratio") if row else None
    if launched and launched["median"] > target:
        missed.append(
            f"- **Figure 3 at 1,000 models, launched warm**: {launched['median']:.2f}× the "
            f"direct `dbt build` against ≤ {target:.2f} — {launched['median'] / target - 1:.0%} "
            "over."
        )
    return lines


def _instance(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    lines = [
        "## 8. The instance: what one event costs, stock vs embedded vs PostgreSQL",
        "",
        f"A plain Dagster multi-asset shaped like the dbt op ({data['assets']:,} assets, "
        f"{data['checks']:,} blocking checks), each storage in a fresh process and home "
        "(`benchmarks/figures/instance.py`). *Planned at run creation*: "
        "`instance.create_run_for_job`, one planned event per asset and check — what UI *From "
        "failure* writes before the run is queued. *Per event*: "
        f"{data['materializations']} materializations written one by one, as a run worker does.",
        "",
        "| storage | DAGSTER_EVENT_BATCH_SIZE | planned at run creation | per event | "
        "planned events stored |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in data["rows"].values():
        lines.append(
            f"| {row['storage']} | {row['batch'] or 'unset'} | {fmt(row['create_run_s'], '.2f')} s "
            f"| {row['ms_per_event']:.2f} ms | {row['planned_events_stored']:,} |"
        )
    lines.append("")
    return lines


LAUNCHED_PATHS = {
    "from_failure_cold": "From failure, cold (DefaultRunLauncher)",
    "from_failure_warm": "From failure, warm (WarmRunLauncher)",
    "from_asset_failure_warm": "From asset failure, warm",
    "sensor_retry_warm": "retry sensor's run, warm",
    "artifacts_warm": "recover_from_artifacts, warm",
}


def _launched(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    target = data["target_time_ratio"]
    lines = [
        "## 9. Recovery launched as the UI and daemon launch it: cold vs warm run worker",
        "",
        "Each re-execution is created as the webserver creates it (its planned events "
        "included), the retry sensor's run as the sensor daemon creates its run request, and "
        "`recover_from_artifacts` as the launchpad creates a run; each is launched through the "
        "instance's run launcher against a workspace whose code server runs in its own process "
        "(`benchmarks/figures/launched.py`). Timed from "
        "creating the run to its end; the floor, `dbt build --select <the needed set>` (a "
        "fresh `dbt`, whose imports a warm run's dbt does not pay: it is forked from the warm "
        f"worker's dbt fork server), side by side, {data['repeats']} repeats. Target ≤ "
        f"{target:.2f}.",
        "",
        "| models | needed | path | wall | creating the run | the run | models re-run | "
        "floor | ratio | target |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, row in by_size(data["sizes"]):
        floor = row["floor_dbt_build_select"]
        for name, label in LAUNCHED_PATHS.items():
            if name not in row["paths"]:  # results from before the path was measured
                continue
            path = row["paths"][name]
            ratio = path["time_ratio"]
            created = Stats.of(path["create_s"])
            lines.append(
                f"| {size_label(n)} | {row['needed']} | {label} | {fmt(path['wall_s'], '.1f')} s "
                f"| {created.fmt('.1f')} s | {fmt(path['dagster_run_s'], '.1f')} s | "
                f"{max(path['executed'])}{'' if path['exactly_the_needed_set'] else ' (not exact)'}"
                f" | {fmt(floor['wall_s'], '.1f')} s | {fmt(ratio)} | "
                f"{mark(ratio['median'] <= target)} |"
            )
            if ratio["median"] > target:
                missed.append(
                    f"- **Figure 9 at {size_label(n)} models, {label}**: "
                    f"{ratio['median']:.2f}× the floor against ≤ {target:.2f} — "
                    f"{ratio['median'] / target - 1:.0%} over."
                )
    lines.append("")
    return lines


def _sensor(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    target = data["target_seconds_at_10000"]
    lines = [
        "## 4. Sensor tick: one `retry_failed_assets_sensor` evaluation",
        "",
        "A synthesized SQLite instance: one failed `daily_pipeline` run created with "
        "`instance.create_run_for_job` (planned events for every asset and check), ten failed "
        "models, materializations and passing checks for everything not downstream of them, a "
        "`STEP_FAILURE`, `RUN_FAILURE`, and the run's run_results.json in the artifact store "
        "(see `benchmarks/figures/sensor.py`). The sensor from `build_definitions()` evaluated "
        "with `build_sensor_context(instance=…, definitions=…)`. *First tick*: from an empty "
        "cursor, so it reads every asset (as after a new failure). *Steady tick*: with the "
        "first tick's cursor, after a second run of `daily_pipeline` started and materialized "
        "100 assets, nothing failed — the watch's few one-row queries, then the last decisions "
        "stand. Storage calls are top-level calls to the run and event-log storages' public "
        "methods, SQL statements counted by SQLAlchemy. Targets: queries constant in N, "
        f"< {target} s at 10,000 (the steady tick; the first tick is shown beside it).",
        "",
        "| assets | blocking checks | to re-run | requested | first tick | storage calls | "
        "SQL statements | steady tick | storage calls | SQL statements | events synthesized |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    measured = {n: row for n, row in data["sizes"].items() if "not_measured" not in row}
    for n, row in by_size(data["sizes"]):
        if "not_measured" in row:
            lines.append(
                f"| {size_label(n)} | – | – | – | not measured: {row['not_measured']} | | | | | | |"
            )
            continue
        steady = row.get("steady") or {}
        steady_cells = (
            f"{fmt(steady['tick_s'], '.3f')} s | {fmt(steady['storage_calls'], '.0f')} | "
            f"{fmt(steady['sql_statements'], '.0f')}"
            if steady
            else "not measured | | "
        )
        lines.append(
            f"| {size_label(n)} | {row['blocking_checks']:,} | {row['needed']} | "
            f"{', '.join(map(str, row['requested_assets'])) or 'none'} | "
            f"{fmt(row['tick_s'], '.3f')} s | {fmt(row['storage_calls'], '.0f')} | "
            f"{fmt(row['sql_statements'], '.0f')} | {steady_cells} | {row['events_written']:,} |"
        )
    lines.append("")
    if not measured:
        missed.append("- **Figure 4**: not measured (the sensor is not defined).")
        return lines
    largest = max(measured, key=int)
    biggest = measured[largest]
    lines += [
        f"Writing the synthetic events at {int(largest):,} assets cost "
        f"{biggest['ms_per_event_stock_storage']:.1f} ms per event through Dagster's stock "
        "SQLite event log (the first 200 events) and "
        f"{biggest['ms_per_event_cached_engine']:.1f} ms with one cached SQLAlchemy engine per "
        "shard (same SQL).",
        "",
    ]
    steady_methods = (measured[largest].get("steady") or {}).get("by_method", {})
    lines += [
        f"Storage calls by method at {int(largest):,} assets, first tick: "
        + ", ".join(f"`{name}` ×{count}" for name, count in measured[largest]["by_method"].items())
        + "; steady tick: "
        + (", ".join(f"`{name}` ×{count}" for name, count in steady_methods.items()) or "–"),
        "",
        "The steady tick's SkipReason: "
        f"“{(measured[largest].get('steady') or {}).get('skip_message') or '–'}”",
        "",
        f"Where one tick at {int(largest):,} assets spends its time (cProfile, cumulative):",
        "",
        "```",
        *measured[largest].get("profile", []),
        "```",
        "",
    ]
    calls = {row["storage_calls"]["median"] for row in measured.values()}
    if len(calls) > 1:
        missed.append(
            "- **Figure 4, queries constant in N**: storage calls vary with N: "
            + ", ".join(
                f"{size_label(n)} → {row['storage_calls']['median']:.0f}"
                for n, row in measured.items()
            )
        )
    top = measured.get("10000")
    steady_top = (top or {}).get("steady")
    if steady_top and steady_top["tick_s"]["median"] >= target:
        missed.append(
            f"- **Figure 4 at 10,000 assets, steady tick**: "
            f"{steady_top['tick_s']['median']:.2f} s against < {target} s."
        )
    if top and not steady_top and top["tick_s"]["median"] >= target:
        found = {}
        for line in top.get("profile", []):
            for name in ("latest_check_executions", "get_asset_records"):
                if line.rstrip().endswith(name) and name not in found:
                    found[name] = float(line.split()[0]) / 1000
        share = ""
        if found:
            share = (
                " Profiled, the tick spends "
                + " and ".join(f"{seconds:.1f} s in `{name}`" for name, seconds in found.items())
                + " (under cProfile)."
            )
        missed.append(
            f"- **Figure 4 at 10,000 assets**: {top['tick_s']['median']:.2f} s against < "
            f"{target} s ({top['tick_s']['median'] / target:.1f}× the target), although the "
            f"number of queries is constant ({top['storage_calls']['median']:.0f} storage calls, "
            f"{top['sql_statements']['median']:.0f} SQL statements at every size).{share}"
        )
    return lines


def _load(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    target = data["target_ratio_at_10000"]
    labels = {
        "imports": "imports",
        "ours_imports": "our imports",
        "ours": "ours",
        "bare": "bare",
        "ours_resolved": "ours resolved",
        "bare_resolved": "bare resolved",
        "ours_gc_off": "ours, gc off",
    }
    present = [
        name for name in labels if all(name in row["wall_s"] for row in data["sizes"].values())
    ]
    lines = [
        "## 5. Load: our Definitions vs a bare `@dbt_assets` over the same manifest",
        "",
        "Fresh process each, whole-process wall time and peak RSS; same parsed manifest. *ours* "
        '= `python -c "from orchestration.definitions import build_definitions; '
        'build_definitions()"`; *bare* = `benchmarks/scripts/bare_load.py`; *gc off* = ours '
        "with `gc.disable()`; *imports* = `import dagster, dagster_dbt`; *our imports* = "
        "`import orchestration.definitions`; *resolved* (earlier runs) added "
        f"`get_repository_def()`. {data['repeats']} repeats. Target: ours ≤ {target:.2f}× bare "
        "at 10,000.",
        "",
        "| models | manifest | "
        + " | ".join(labels[name] for name in present)
        + " | ours ÷ bare | target | ours RSS | bare RSS |",
        "|---:|---:|" + "---:|" * len(present) + "---:|---|---:|---:|",
    ]
    for n, row in by_size(data["sizes"]):
        wall, rss = row["wall_s"], row["peak_rss_mb"]
        at_target_size = parse_size(n)[0] == 10000
        lines.append(
            f"| {size_label(n)} | {row['manifest_mb']} MB | "
            + " | ".join(f"{fmt(wall[name], '.1f')} s" for name in present)
            + f" | {fmt(row['ratio_ours_to_bare'])} | "
            + (mark(row["ratio_ours_to_bare"]["median"] <= target) if at_target_size else "–")
            + f" | {fmt(rss['ours'], '.0f')} MB | {fmt(rss['bare'], '.0f')} MB |"
        )
    lines.append("")
    row = data["sizes"].get("10000")
    if row and row["ratio_ours_to_bare"]["median"] > target:
        wall = row["wall_s"]
        gc_gain = wall["ours"]["median"] - wall["ours_gc_off"]["median"]
        rss = row["peak_rss_mb"]
        imports_note = ""
        if "ours_imports" in wall:
            imports_note = (
                f" `import orchestration.definitions` took {wall['ours_imports']['median']:.1f} s "
                f"and {rss['ours_imports']['median']:.0f} MB vs "
                f"{wall['imports']['median']:.1f} s and {rss['imports']['median']:.0f} MB for "
                "`import dagster, dagster_dbt`."
            )
        missed.append(
            f"- **Figure 5 at 10,000 models**: ours {row['ratio_ours_to_bare']['median']:.2f}× "
            f"bare against ≤ {target:.2f} ({wall['ours']['median']:.1f} s vs "
            f"{wall['bare']['median']:.1f} s; peak RSS {rss['ours']['median']:.0f} "
            f"vs {rss['bare']['median']:.0f} MB).{imports_note} With `gc.disable()` "
            f"ours loaded in {wall['ours_gc_off']['median']:.1f} s ({gc_gain:.1f} s less, "
            f"{wall['ours_gc_off']['median'] / wall['bare']['median']:.2f}× bare)."
        )
    return lines


def _planner(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    target = data["target_ms"]
    warm = data["plan_run_chain_warm_ms"]
    lines = [
        "## 6. Planner: `plan_run_chain` on a 10,000-node graph with 10 failures",
        "",
        f"The generator's 10,000-model graph; a failed run that planned every asset, "
        f"{data['failures']} errored models, their {data['to_rerun']} downstream skipped, dbt "
        f"run_results with every test, and the dbt node index. {data['repeats']} timings each. "
        f"*warm*: graph adjacency cached (as within one op or tick); *cold*: "
        f"`AssetGraph.from_parents` included. Target < {target:.0f} ms.",
        "",
        "| nodes | failures | to re-run | plan_run_chain warm | target | cold | "
        "plan_from_asset_states (sensor) |",
        "|---:|---:|---:|---:|---|---:|---:|",
        f"| {data['nodes']:,} | {data['failures']} | {data['to_rerun']} | "
        f"{fmt(warm, '.1f')} ms | {mark(warm['median'] < target)} | "
        f"{fmt(data['plan_run_chain_cold_ms'], '.1f')} ms | "
        f"{fmt(data['plan_from_asset_states_ms'], '.2f')} ms |",
        "",
    ]
    if warm["median"] >= target:
        missed.append(
            f"- **Figure 6**: {warm['median']:.1f} ms against < {target:.0f} ms "
            f"({warm['median'] / target - 1:.0%} over)."
        )
    return lines


def _microbatch(data: Mapping[str, Any], missed: list[str]) -> list[str]:
    ratio = data["ratio"]
    lines = [
        "## 7. Batch-level recovery: microbatches re-run ÷ microbatches that failed",
        "",
        f"Our project's `{data['model']}` ({data['batches']} daily batches); one batch fails "
        "with a genuine database error, the run is recovered with *From failure*; batches "
        "counted from the recovery's stored run_results. Dagster's native *From asset failure* "
        "rebuilds the whole model (dagster-dbt records nothing for a partial-success model): "
        "every batch of the window. One run each.",
        "",
        "| batches | failed | ours: re-run | ours: ratio | target | Dagster native: re-run | "
        "native ratio | recovery run |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
        f"| {data['batches']} | {data['failed_batches']} | {data['rerun_batches']} | "
        f"{ratio:.2f} | {mark(ratio <= data['target_ratio'])} | "
        f"{data['native_from_asset_failure_batches']} | {data['native_ratio']:.2f} | "
        f"{data['recovery_s']:.1f} s |",
        "",
    ]
    if ratio > data["target_ratio"]:
        missed.append(f"- **Figure 7**: {ratio:.2f} batches re-run per failed batch.")
    return lines
