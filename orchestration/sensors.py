"""Sensors (the retry sensor lands with the automatic-recovery issue)."""

from __future__ import annotations

from dagster import SensorDefinition

from orchestration.settings import Settings


def build_sensors(settings: Settings) -> list[SensorDefinition]:
    return []
