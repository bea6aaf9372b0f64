"""Dagster + dbt where a failure costs only the failed work."""
