"""Schedules for the two jobs; crons and timezone from settings."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from orchestration.jobs import DAILY_PIPELINE, WEEKLY_FULL_REFRESH
from orchestration.settings import Settings


def build_schedules(settings: Settings) -> list[ScheduleDefinition]:
    status = (
        DefaultScheduleStatus.RUNNING
        if settings.schedules_running
        else (DefaultScheduleStatus.STOPPED)
    )
    return [
        ScheduleDefinition(
            name=f"{DAILY_PIPELINE}_schedule",
            job_name=DAILY_PIPELINE,
            cron_schedule=settings.daily_cron,
            execution_timezone=settings.timezone,
            default_status=status,
        ),
        ScheduleDefinition(
            name=f"{WEEKLY_FULL_REFRESH}_schedule",
            job_name=WEEKLY_FULL_REFRESH,
            cron_schedule=settings.weekly_cron,
            execution_timezone=settings.timezone,
            default_status=status,
        ),
    ]
