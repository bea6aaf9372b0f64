"""Run order for edges Dagster knows and dbt does not (``orchestration.dbt.stages``)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestration.dbt.invocation import not_done_nodes, stop_dbt
from orchestration.dbt.stages import plan_stages
from orchestration.errors import ConfigurationError


def node(resource_type: str, *parents: str, relation: str | None = None, **config: object) -> dict:
    return {
        "resource_type": resource_type,
        "depends_on": {"nodes": list(parents)},
        "relation_name": relation,
        "config": config,
    }


def jaffle_manifest() -> dict:
    """seed raw_orders writes "db"."raw"."raw_orders", which source ecom.raw_orders reads."""
    return {
        "nodes": {
            "seed.p.raw_orders": node("seed", relation='"db"."raw"."raw_orders"'),
            "model.p.stg_orders": node("model", "source.p.ecom.raw_orders", relation="x.stg"),
            "model.p.orders": node("model", "model.p.stg_orders", relation="x.orders"),
            "model.p.calendar": node("model", relation="x.calendar"),
            "test.p.unique_orders": node("test", "model.p.orders"),
            "test.p.rel_orders_calendar": node("test", "model.p.orders", "model.p.calendar"),
            "test.p.source_not_null": node("test", "source.p.ecom.raw_orders"),
            "model.p.old": node("model", relation="x.old", enabled=False),
        },
        "sources": {"source.p.ecom.raw_orders": {"relation_name": '"DB"."RAW"."raw_orders"'}},
        "exposures": {"exposure.p.dash": {}},
    }


def test_a_seed_that_writes_a_sources_relation_runs_a_stage_before_its_readers() -> None:
    manifest = jaffle_manifest()
    plan = plan_stages(manifest)
    assert plan.extra_edges == {("seed.p.raw_orders", "source.p.ecom.raw_orders")}
    first, second = plan.split(None, manifest)
    assert set(first) == {"model.p.calendar", "seed.p.raw_orders"}  # disabled: not built
    assert set(second) == {
        "model.p.stg_orders",
        "model.p.orders",
        "test.p.unique_orders",
        "test.p.rel_orders_calendar",  # after its later parent, never before
        "test.p.source_not_null",  # after the seed loaded the table it tests
        "exposure.p.dash",
    }


def test_a_dagster_edge_dbt_lacks_is_staged_and_one_dbt_already_has_is_not() -> None:
    manifest = jaffle_manifest()
    manifest["sources"] = {}
    plan = plan_stages(
        manifest,
        [("model.p.stg_orders", "model.p.orders"), ("model.p.calendar", "model.p.stg_orders")],
    )
    assert plan.extra_edges == {("model.p.calendar", "model.p.stg_orders")}
    assert plan.stage_of["model.p.stg_orders"] == 1 and plan.stage_of["model.p.orders"] == 1


def test_a_project_without_extra_edges_is_one_stage() -> None:
    manifest = jaffle_manifest()
    manifest["sources"]["source.p.ecom.raw_orders"]["relation_name"] = '"db"."raw"."elsewhere"'
    plan = plan_stages(manifest)
    assert not plan.staged
    assert set(plan.stage_of.values()) == {0}


def test_a_subset_is_split_and_tests_follow_their_latest_selected_parent() -> None:
    manifest = jaffle_manifest()
    plan = plan_stages(manifest)
    parts = plan.split(["seed.p.raw_orders", "model.p.orders"], manifest)
    assert parts == [
        ("seed.p.raw_orders",),
        ("model.p.orders", "test.p.rel_orders_calendar", "test.p.unique_orders"),
    ]


def test_what_a_failed_seed_blocks_reaches_through_the_source_to_every_reader() -> None:
    plan = plan_stages(jaffle_manifest())
    blocked = plan.downstream({"seed.p.raw_orders"})
    assert {"model.p.stg_orders", "model.p.orders", "test.p.source_not_null"} <= blocked
    assert "model.p.calendar" not in blocked


def test_a_cycle_through_a_resolved_source_names_both_nodes_and_the_fix() -> None:
    manifest = {
        "nodes": {
            "model.p.a": node("model", "source.p.loop.b", relation="x.a"),
            "model.p.b": node("model", "model.p.a", relation="x.b"),
        },
        "sources": {"source.p.loop.b": {"relation_name": "x.b"}},
    }
    with pytest.raises(ConfigurationError) as raised:
        plan_stages(manifest, [("model.p.b", "model.p.a")])
    message = str(raised.value)
    assert "model.p.a" in message and "model.p.b" in message
    assert "meta.dagster.asset_key" in message and "remove one" in message


def test_not_done_nodes_are_errors_skips_and_the_parents_of_failed_tests() -> None:
    manifest = jaffle_manifest()
    results = {
        "results": [
            {"unique_id": "model.p.stg_orders", "status": "success"},
            {"unique_id": "model.p.calendar", "status": "error"},
            {"unique_id": "test.p.unique_orders", "status": "fail"},
            {"unique_id": "model.p.orders", "status": "success"},
            {"unique_id": "test.p.source_not_null", "status": "warn"},
        ]
    }
    assert not_done_nodes(results, [], manifest) == {"model.p.calendar", "model.p.orders"}
    assert not_done_nodes(None, ["model.p.x"], manifest) == {"model.p.x"}


def _sleeper(ignore_sigint: bool) -> subprocess.Popen:
    code = "import signal, time\n"
    if ignore_sigint:
        code += "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_stop_dbt_interrupts_then_kills_a_process_that_ignores_the_interrupt() -> None:
    polite = _sleeper(ignore_sigint=False)
    stop_dbt(polite, grace_seconds=10)
    assert polite.returncode not in (None, -9)  # ended by the interrupt
    stubborn = _sleeper(ignore_sigint=True)
    started = time.monotonic()
    stop_dbt(stubborn, grace_seconds=0.5)
    assert stubborn.returncode == -9 and time.monotonic() - started < 10
