"""The sensor recovers a failure in a non-dbt asset: only that asset is re-run."""

from __future__ import annotations

import pytest

from tests.conftest import Pipeline
from tests.integration.test_retry_sensor import (
    REPORT_ASSET,
    SensorDriver,
    execute_retry,
    models_run,
    selected,
)

pytestmark = pytest.mark.integration


def test_a_failed_python_asset_is_retried_alone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")
    pipeline.faults().inject(REPORT_ASSET, times=1)  # "connection reset by peer …": transient
    failed = pipeline.run_job("daily_pipeline")
    assert not failed.success
    assert models_run(pipeline, failed.run_id)  # dbt itself succeeded in that run

    tick = SensorDriver(pipeline).tick()
    assert len(tick.run_requests) == 1, tick.skip_message
    request = tick.run_requests[0]
    assert selected(request) == {REPORT_ASSET}

    retry = execute_retry(pipeline, request)
    assert retry.success
    assert models_run(pipeline, retry.run_id) == {}  # no dbt model was rebuilt
