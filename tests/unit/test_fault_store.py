"""``FaultStore``: inject, list, clear, the transient countdown, and a disabled store.

(``test_faults_switch.py`` covers the CLI's refusal and a disabled store's run-side readers.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.errors import FaultError
from orchestration.faults.store import Fault, FaultStore, InjectedFault


@pytest.fixture
def store(tmp_path: Path) -> FaultStore:
    return FaultStore(tmp_path / "data" / "faults.json")


def model_error(name: str, message: str = "connection reset by peer (injected ...)") -> dict:
    return {"unique_id": f"model.crm.{name}", "status": "error", "message": message}


def test_a_new_store_lists_nothing_and_writes_nothing(store: FaultStore) -> None:
    assert store.list() == []
    assert store.dbt_vars() == {}
    assert not store.path.exists()


def test_inject_then_list_in_key_order(store: FaultStore) -> None:
    transient = store.inject("stg_deals", times=2)
    permanent = store.inject("int_deals", target="test", message="custom")
    assert transient == Fault(
        "stg_deals",
        "model",
        2,
        "connection reset by peer (injected transient fault in model stg_deals)",
    )
    assert transient.transient is True
    assert permanent == Fault("int_deals", "test", None, "custom")
    assert permanent.transient is False
    # Listed by their "target:model" key: "model:stg_deals" < "test:int_deals".
    assert store.list() == [transient, permanent]
    assert json.loads(store.path.read_text())["faults"]["model:stg_deals"]["remaining"] == 2


def test_default_messages_read_like_the_errors_they_stand_for(store: FaultStore) -> None:
    assert store.inject("a").message == "permission denied for table a (injected permanent fault)"
    assert store.inject("b", target="test").message == "injected data test failure on b"


def test_injecting_the_same_model_again_replaces_the_fault(store: FaultStore) -> None:
    store.inject("stg_deals", times=3)
    store.inject("stg_deals")
    assert [(f.model, f.remaining) for f in store.list()] == [("stg_deals", None)]


@pytest.mark.parametrize("bad", ["", "a'b", 'a"b', "a\\b", "a\nb"])
def test_a_name_that_would_break_the_sql_is_refused(store: FaultStore, bad: str) -> None:
    with pytest.raises(FaultError, match="is not a model name"):
        store.inject(bad)
    assert store.list() == []


def test_times_below_one_is_refused(store: FaultStore) -> None:
    with pytest.raises(FaultError, match="--times must be at least 1"):
        store.inject("stg_deals", times=0)


def test_clear_one_model_or_all(store: FaultStore) -> None:
    store.inject("a")
    store.inject("a", target="test")
    store.inject("b")
    assert store.clear("a") == 2  # both targets of the model
    assert [f.model for f in store.list()] == ["b"]
    assert store.clear("nobody") == 0
    assert store.clear() == 1
    assert store.list() == []


def test_dbt_vars_split_model_and_test_faults(store: FaultStore) -> None:
    store.inject("a", message="ma")
    store.inject("b", target="test", message="tb")
    assert store.dbt_vars() == {
        "orchestration_model_faults": {"a": "ma"},
        "orchestration_test_faults": {"b": "tb"},
    }


def test_a_transient_model_fault_counts_down_only_when_it_fired(store: FaultStore) -> None:
    store.inject("a", times=2)
    store.inject("b", times=1)
    skipped = {"unique_id": "model.crm.b", "status": "skipped", "message": None}
    not_ours = model_error("b", "relation does not exist")

    assert store.record_invocation({"results": [model_error("a"), skipped, not_ours]}) == []
    assert {f.model: f.remaining for f in store.list()} == {"a": 1, "b": 1}

    assert store.record_invocation({"results": [model_error("a"), model_error("b")]}) == ["a", "b"]
    assert store.list() == []


def test_a_permanent_fault_never_counts_down(store: FaultStore) -> None:
    store.inject("a")
    assert store.record_invocation({"results": [model_error("a")]}) == []
    assert [(f.model, f.remaining) for f in store.list()] == [("a", None)]


def test_a_test_fault_counts_down_when_a_test_of_its_model_failed(store: FaultStore) -> None:
    store.inject("a", target="test", times=1)
    store.inject("a", times=1)  # the model fault on the same model is counted separately
    tests = {"test.crm.not_null_a_id": "a", "test.crm.unique_b_id": "b"}
    other_test = {"unique_id": "test.crm.unique_b_id", "status": "fail"}
    passed = {"unique_id": "test.crm.not_null_a_id", "status": "pass"}
    assert store.record_invocation({"results": [other_test, passed]}, test_models=tests) == []
    assert len(store.list()) == 2

    failed_test = {"unique_id": "test.crm.not_null_a_id", "status": "fail"}
    assert store.record_invocation({"results": [failed_test]}, test_models=tests) == ["a"]
    assert [(f.model, f.target) for f in store.list()] == [("a", "model")]


def test_nothing_to_record_leaves_the_file_alone(store: FaultStore) -> None:
    assert store.record_invocation({"results": [model_error("a")]}) == []  # no file
    assert not store.path.exists()
    store.inject("a", times=1)
    assert store.record_invocation(None) == []
    assert store.record_invocation({}) == []
    assert [f.remaining for f in store.list()] == [1]


def test_a_python_fault_raises_its_message_and_counts_down(store: FaultStore) -> None:
    store.inject("ingest_deals", times=2, message="boom")
    for remaining in (1, None):
        with pytest.raises(InjectedFault, match="^boom$"):
            store.fire_python_fault("ingest_deals")
        assert [f.remaining for f in store.list()] == ([remaining] if remaining else [])
    store.fire_python_fault("ingest_deals")  # spent: no longer raises
    store.fire_python_fault("unrelated")


def test_a_disabled_store_refuses_to_inject_and_ignores_the_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    FaultStore(path).inject("a", times=1)
    before = path.read_bytes()
    disabled = FaultStore(path, enabled=False)

    with pytest.raises(FaultError, match="Fault injection is off"):
        disabled.inject("b")
    assert disabled.dbt_vars() == {}
    assert disabled.record_invocation({"results": [model_error("a")]}) == []
    disabled.fire_python_fault("a")
    assert path.read_bytes() == before
    # Listing still works: `faults list` shows what the file holds.
    assert [f.model for f in disabled.list()] == ["a"]


def test_an_unreadable_file_says_how_to_reset_it(store: FaultStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(FaultError, match="faults clear"):
        store.list()


def test_a_batch_fault_fails_one_day_of_one_model_and_counts_down_when_that_day_failed(
    store: FaultStore,
) -> None:
    fault = store.inject("fct_daily", batch="2026-09-02", times=1)
    store.inject("fct_daily", batch="2026-09-05")
    assert fault.target == "batch" and "batch 2026-09-02" in fault.message
    assert store.dbt_vars() == {
        "orchestration_batch_faults": {
            "fct_daily": {"2026-09-02": fault.message, "2026-09-05": store.list()[1].message}
        }
    }
    other_day = {
        "unique_id": "model.p.fct_daily",
        "status": "partial success",
        "batch_results": {"successful": [], "failed": [["2026-09-05T00:00:00+00:00", "x"]]},
    }
    assert store.record_invocation({"results": [other_day]}) == []
    that_day = dict(other_day, batch_results={"failed": [["2026-09-02T00:00:00+00:00", "x"]]})
    assert store.record_invocation({"results": [that_day]}) == ["fct_daily"]
    assert [f.batch for f in store.list()] == ["2026-09-05"]


def test_a_batch_that_is_not_a_day_is_refused_with_the_expected_shape(store: FaultStore) -> None:
    with pytest.raises(FaultError, match="YYYY-MM-DD"):
        store.inject("fct_daily", batch="yesterday")
