"""``memoize_output_asset_keys``: a step's output asset keys are computed once, and Dagster's
topological-order check that uses them still holds (issue 10).

A plain multi-asset shaped like the dbt op (a chain of assets, one op) executed in process.
(No ``from __future__ import annotations``: Dagster reads the ``context`` annotation.)
"""

from collections.abc import Iterator
from typing import Any

import pytest
from dagster import (
    AssetExecutionContext,
    AssetSpec,
    DagsterInvariantViolationError,
    Output,
    materialize,
    multi_asset,
)
from dagster._core.execution.context.system import StepExecutionContext

from orchestration.dbt.assets import memoize_output_asset_keys

CHAIN = 40
SPECS = [AssetSpec(f"a{i:02d}", deps=[f"a{i - 1:02d}"] if i else []) for i in range(CHAIN)]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    stock = StepExecutionContext.get_output_asset_keys

    def counted(self: StepExecutionContext) -> Any:
        calls.append(1)
        return stock(self)

    monkeypatch.setattr(StepExecutionContext, "get_output_asset_keys", counted)
    return calls


def _chain(order: list[int]) -> Any:
    @multi_asset(specs=SPECS, name="chain")
    def chain(context: AssetExecutionContext) -> Iterator[Output]:
        memoize_output_asset_keys(context)
        for i in order:
            yield Output(None, output_name=f"a{i:02d}")

    return chain


def test_the_keys_are_computed_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    result = materialize([_chain(list(range(CHAIN)))])
    assert result.success
    assert len(result.get_asset_materialization_events()) == CHAIN
    # Stock Dagster asks once before the body and once per Output: CHAIN + 1 times.
    assert len(calls) <= 2


def test_a_child_yielded_before_its_parent_still_fails_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _counting(monkeypatch)
    order = [1, 0, *range(2, CHAIN)]
    with pytest.raises(DagsterInvariantViolationError, match='"a01" was yielded before'):
        materialize([_chain(order)])
