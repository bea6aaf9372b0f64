"""The project's error hierarchy, in one place.

Every message says what to do next: these errors reach people through the CLI, the
Dagster UI and sensor skip reasons, so "what went wrong" alone is not enough.
"""

from __future__ import annotations


class OrchestrationError(Exception):
    """Base class: anything this project raises on purpose."""


class ConfigurationError(OrchestrationError):
    """A setting (environment variable, run config) is missing or invalid."""


class ArtifactStoreError(OrchestrationError):
    """The artifact store could not be read or written."""


class ArtifactNotFoundError(ArtifactStoreError):
    """The artifacts asked for are not in the store."""


class RunResultsError(OrchestrationError):
    """A run_results.json is truncated, corrupt, or not a dbt run_results file."""


class PlanError(OrchestrationError):
    """A retry plan cannot be computed from what is known about a run."""


class FaultError(OrchestrationError):
    """Fault injection was asked for something it cannot do."""
