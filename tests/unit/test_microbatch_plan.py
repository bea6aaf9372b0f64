"""Batch-level recovery in the pure planner: windows, config changes, chains, full refresh.

A microbatch model ``daily`` (one batch per day) feeds ``monthly``; hand-written run_results
entries in dbt's own shape (``batch_results``) stand in for real runs.
"""

from __future__ import annotations

import json
from datetime import date

from orchestration.artifacts.run_results import RunResults, merge_run_results, parse_run_results
from orchestration.dbt.argv import Selection, build_args, dbt_event_time, event_time_window
from orchestration.recovery import (
    AssetGraph,
    BatchWindow,
    DbtNodeIndex,
    MicrobatchConfig,
    Reason,
    RunOutcome,
    RunStatus,
    plan_from_run_results,
    plan_run_chain,
)
from orchestration.recovery.batches import batch_windows, microbatch_configs

DAILY, MONTHLY = "daily", "monthly"
DAILY_ID, MONTHLY_ID = "model.p.daily", "model.p.monthly"
GRAPH = AssetGraph.from_parents({DAILY: [], MONTHLY: [DAILY]})
CONFIG = MicrobatchConfig(event_time="d", batch_size="day", begin="2026-01-01", lookback=1)
INDEX = DbtNodeIndex(
    asset_by_unique_id={DAILY_ID: DAILY, MONTHLY_ID: MONTHLY},
    test_to_check={},
    microbatch={DAILY_ID: CONFIG},
)


def day(n: int) -> list[str]:
    """Batch ``n`` of January 2026 as dbt writes it."""
    return [f"2026-01-{n:02d}T00:00:00+00:00", f"2026-01-{n + 1:02d}T00:00:00+00:00"]


def results(*, ok: list[int], failed: list[int], full_refresh: bool = False) -> RunResults:
    status = "partial success" if ok and failed else "error" if failed else "success"
    document = {
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
        "args": {"which": "build", "full_refresh": full_refresh},
        "results": [
            {
                "unique_id": DAILY_ID,
                "status": status,
                "message": status.upper(),
                "batch_results": {
                    "successful": [day(n) for n in ok],
                    "failed": [day(n) for n in failed],
                },
            },
            {"unique_id": MONTHLY_ID, "status": "skipped" if failed else "success"},
        ],
    }
    return parse_run_results(json.dumps(document), source="run_results.json")


def outcome(run_id: str, dbt: RunResults, **extra: object) -> RunOutcome:
    materialized = {MONTHLY} if dbt.by_unique_id[MONTHLY_ID].status == "success" else set()
    if dbt.by_unique_id[DAILY_ID].status == "success":
        materialized.add(DAILY)
    return RunOutcome(
        run_id=run_id,
        status=RunStatus.FAILURE if len(materialized) < 2 else RunStatus.SUCCESS,
        planned=frozenset({DAILY, MONTHLY}),
        materialized=frozenset(materialized),
        dbt_results=dbt,
        microbatch_configs=extra.pop("configs", {DAILY_ID: CONFIG}),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def test_contiguous_failed_batches_merge_and_gaps_make_separate_windows() -> None:
    windows = batch_windows([tuple(day(n)) for n in (7, 3, 4, 5, 3)])
    assert windows == (
        BatchWindow("2026-01-03T00:00:00+00:00", "2026-01-06T00:00:00+00:00", 3),
        BatchWindow("2026-01-07T00:00:00+00:00", "2026-01-08T00:00:00+00:00", 1),
    )
    assert [w.describe() for w in windows] == ["2026-01-03 to 2026-01-06 (3 batches)", "2026-01-07"]


def test_a_partial_success_model_reruns_only_its_failed_windows_and_its_downstream() -> None:
    plan = plan_run_chain(GRAPH, [outcome("r1", results(ok=[1, 2, 4], failed=[3, 5]))], index=INDEX)
    daily = next(asset for asset in plan.assets if asset.key == DAILY)
    assert daily.reason is Reason.BATCHES_FAILED
    assert [(w.start, w.end) for w in daily.batches] == [tuple(day(3)), tuple(day(5))]
    assert daily.detail.startswith("2 of 5 batches failed")
    monthly = next(asset for asset in plan.assets if asset.key == MONTHLY)
    assert monthly.reason is Reason.UPSTREAM_FAILED and monthly.caused_by == (DAILY,)
    assert plan.batch_windows == {DAILY: daily.batches}
    assert plan.to_dict()["assets"][0]["batches"][0]["batches"] == 1


def test_a_chained_retry_keeps_only_the_batches_that_failed_again() -> None:
    first = outcome("r1", results(ok=[1, 2, 4], failed=[3, 5]))
    retry = outcome("r2", results(ok=[3], failed=[5]))  # the retry ran only 3 and 5
    plan = plan_run_chain(GRAPH, [first, retry], index=INDEX)
    daily = next(asset for asset in plan.assets if asset.key == DAILY)
    assert [(w.start, w.end) for w in daily.batches] == [tuple(day(5))]
    assert daily.run_id == "r2"


def test_a_changed_batch_config_rebuilds_the_whole_model_and_says_why() -> None:
    before = {DAILY_ID: MicrobatchConfig("d", "hour", "2026-01-01", 1)}
    plan = plan_run_chain(
        GRAPH, [outcome("r1", results(ok=[1], failed=[2]), configs=before)], index=INDEX
    )
    daily = next(asset for asset in plan.assets if asset.key == DAILY)
    assert daily.reason is Reason.BATCHES_FAILED and daily.batches == ()
    assert "rebuilt whole" in daily.detail and "batch_size hour → day" in daily.detail


def test_without_the_failed_runs_manifest_the_model_is_rebuilt_whole() -> None:
    plan = plan_run_chain(
        GRAPH, [outcome("r1", results(ok=[1], failed=[2]), configs=None)], index=INDEX
    )
    daily = next(asset for asset in plan.assets if asset.key == DAILY)
    assert daily.batches == () and "no stored manifest" in daily.detail


def test_artifacts_of_a_full_refresh_plan_a_full_refresh_and_the_summary_says_so() -> None:
    dbt = results(ok=[1], failed=[2], full_refresh=True)
    plan = plan_from_run_results(
        INDEX, GRAPH, dbt, run_id="ext", microbatch_configs={DAILY_ID: CONFIG}
    )
    assert plan.full_refresh is True and plan.to_dict()["full_refresh"] is True
    assert plan.summary().endswith("1 microbatches; with --full-refresh")
    assert plan.batch_windows[DAILY][0].start == day(2)[0]
    incremental = plan_from_run_results(INDEX, GRAPH, results(ok=[1], failed=[2]), run_id="x")
    assert incremental.full_refresh is False
    assert incremental.batch_windows == {}  # no manifest given: rebuilt whole


def test_a_full_refresh_whose_every_batch_failed_is_rebuilt_whole() -> None:
    every = outcome("r1", results(ok=[], failed=[1, 2, 3]), full_refresh=True)
    daily = next(a for a in plan_run_chain(GRAPH, [every], index=INDEX).assets if a.key == DAILY)
    assert daily.batches == () and "table was not recreated" in daily.detail
    incremental = outcome("r1", results(ok=[], failed=[1, 2, 3]))
    plan = plan_run_chain(GRAPH, [incremental], index=INDEX)
    assert plan.batch_windows[DAILY][0].batches == 3  # every batch, incrementally: the same


def test_a_run_that_full_refreshed_makes_its_chain_full_refresh() -> None:
    first = outcome("r1", results(ok=[1], failed=[2]), full_refresh=True)
    assert plan_run_chain(GRAPH, [first], index=INDEX).full_refresh is True
    assert plan_run_chain(GRAPH, [outcome("r1", results(ok=[1], failed=[2]))]).full_refresh is False


def test_window_invocations_of_one_run_merge_batch_by_batch() -> None:
    merged = merge_run_results([results(ok=[3], failed=[5]), results(ok=[5], failed=[])])
    daily = merged.by_unique_id[DAILY_ID]
    assert daily.status == "success" and daily.batches_failed == ()
    assert daily.batches_succeeded == (tuple(day(3)), tuple(day(5)))
    again = merge_run_results([results(ok=[3], failed=[]), results(ok=[], failed=[5])])
    assert again.by_unique_id[DAILY_ID].status == "partial success"


def test_manifest_configs_include_the_inputs_event_time() -> None:
    manifest = {
        "nodes": {
            DAILY_ID: {
                "config": {
                    "incremental_strategy": "microbatch",
                    "event_time": "d",
                    "batch_size": "day",
                    "begin": "2026-01-01T00:00:00",
                    "lookback": 1,
                },
                "depends_on": {"nodes": ["model.p.stg"]},
            },
            "model.p.stg": {"config": {"event_time": "rate_date"}},
            MONTHLY_ID: {"config": {"materialized": "table"}},
        }
    }
    configs = microbatch_configs(manifest)
    assert set(configs) == {DAILY_ID}
    assert configs[DAILY_ID].input_event_times == (("model.p.stg", "rate_date"),)
    changed = dict(manifest["nodes"]["model.p.stg"], config={"event_time": "loaded_at"})
    other = microbatch_configs({"nodes": {**manifest["nodes"], "model.p.stg": changed}})
    assert configs[DAILY_ID].differences(other[DAILY_ID]) == ["event_time of its inputs changed"]


def test_event_time_flags_are_utc_without_offset_and_the_window_ends_after_today() -> None:
    assert dbt_event_time("2026-09-02T00:00:00+00:00") == "2026-09-02T00:00:00"
    assert dbt_event_time("2026-09-02T02:00:00+02:00") == "2026-09-02T00:00:00"
    assert event_time_window(3, date(2026, 12, 1)) == ("2026-11-29", "2026-12-02")
    assert event_time_window(0, date(2026, 12, 1)) is None
    args = build_args(
        "run",
        selection=Selection.everything(),
        manifest={"nodes": {}},
        threshold=100,
        event_time=("2026-09-02T00:00:00+00:00", "2026-09-03T00:00:00+00:00"),
    )
    assert args == [
        "run",
        "--event-time-start",
        "2026-09-02T00:00:00",
        "--event-time-end",
        "2026-09-03T00:00:00",
    ]
