"""``retry_failed_assets_sensor``: automatic recovery of failed assets and their downstream.

Each tick reads the latest state of every asset in a fixed number of batched queries
(``history.tick_state``), groups the failed assets by failure chain (root run → retry …), asks
the retry policy what to do with each chain (``recovery.policy.decide``: budget, backoff, error
kind) and then launches a run of the chain's failed assets plus everything downstream of them in
the asset graph, or says why not — SkipReason text in the UI, and for every give-up (each failed
run of a chain it gives up on), one alert to the webhook from settings. An alert waits in the
cursor's outbox until the receiver accepted it, retried on later ticks with backoff; after
``tick.ALERT_DELIVERY.max_deliveries`` failed attempts the sensor logs one ERROR line and the tick's
SkipReason names the undelivered alert.

Never twice: a retry's ``run_key`` is ``retry:<root>:<attempt>`` (Dagster launches a run key once
per sensor), the typed JSON cursor remembers which failed run got which retry and which give-ups
were alerted (and holds the outbox), and the attempt number counts every retry of the chain
already in the instance, so overlapping ticks, a daemon restart or a second daemon cannot launch
the same retry twice.

The per-tick logic (read → decide → request) is in ``retry_sensor.tick``; this module is the
Dagster shell around it.
"""

from __future__ import annotations

import time

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from orchestration.history.tick_state import job_asset_keys
from orchestration.recovery.cursor import RetryCursor
from orchestration.resources import ArtifactStoreResource
from orchestration.retry_sensor.chains import SENSOR_NAME
from orchestration.retry_sensor.tick import run_retry_tick
from orchestration.settings import Settings, load_settings


def build_sensors(settings: Settings) -> list[SensorDefinition]:
    return [build_retry_sensor(settings)]


def build_retry_sensor(settings: Settings) -> SensorDefinition:
    @sensor(
        name=SENSOR_NAME,
        target=AssetSelection.all(),
        minimum_interval_seconds=settings.retry_sensor_interval_seconds,
        default_status=(
            DefaultSensorStatus.RUNNING
            if settings.retry_sensor_running
            else DefaultSensorStatus.STOPPED
        ),
        description=(
            "Retries failed assets and everything downstream of them, with a budget per failure "
            "chain, exponential backoff and error classification; deterministic errors and "
            "exhausted budgets are reported (SkipReason + webhook alert) instead."
        ),
    )
    def retry_failed_assets_sensor(
        context: SensorEvaluationContext, artifacts: ArtifactStoreResource
    ) -> SensorResult | SkipReason:
        repository = context.repository_def
        tick = run_retry_tick(
            context.instance,
            repository.asset_graph,
            RetryCursor.from_json_with_warning(context.cursor),
            settings=load_settings(),
            now=time.time(),
            open_store=artifacts.open,
            job_assets=job_asset_keys(repository),
        )
        for line in tick.lines:
            context.log.info(line)
        for line in tick.errors:
            context.log.error(line)
        context.log.debug("instance queries this tick: %s", ", ".join(tick.queries))
        context.update_cursor(tick.cursor.to_json())
        if tick.run_requests:
            return SensorResult(run_requests=tick.run_requests)
        return SkipReason("\n".join(tick.lines))

    return retry_failed_assets_sensor


__all__ = ["SENSOR_NAME", "build_retry_sensor", "build_sensors"]
