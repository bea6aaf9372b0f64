"""Which production state a slim CI run compares against, and where its manifest is put.

The production state is a production run's stored ``manifest.json``. A fresh ``slim_ci`` run
takes the one named in its run config (``production_run_id``) or else the run
``latest_production.json`` points at; every re-execution and retry of it (UI *From failure* /
*From asset failure*, ``retry_failed_assets_sensor``) takes the one the first run used, read
from the ``orchestration/ci_state_run`` tag along its lineage — not whatever production run is
newest by then: a retry must finish the comparison the failed run started, or it would build
a different set of models against a different production.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRun

from orchestration.artifacts.store import (
    ArtifactStore,
    manifest_key,
    read_production_state,
    record_production_state,
)
from orchestration.dbt.profile import write_ci_profile
from orchestration.errors import ArtifactStoreError, ConfigurationError
from orchestration.history.runs import run_lineage
from orchestration.settings import Settings
from orchestration.tags import CI_NO_STATE, CI_STATE_TAG, PIPELINE_TAG


@dataclass(frozen=True)
class ProductionState:
    """The production run a slim CI run defers to (``None``: none stored yet), and why."""

    run_id: str | None
    origin: str

    @property
    def tag_value(self) -> str:
        return self.run_id or CI_NO_STATE

    def describe(self) -> str:
        if self.run_id is None:
            return f"Slim CI: no production state ({self.origin})."
        return f"Slim CI: comparing against production run {self.run_id} ({self.origin})."


def is_production_run(run: DagsterRun) -> bool:
    """A run of ``daily_pipeline`` / ``weekly_full_refresh``, or a UI re-execution of one
    (which keeps the job and its tags)."""
    from orchestration.jobs import DAILY_PIPELINE, WEEKLY_FULL_REFRESH

    production = {DAILY_PIPELINE, WEEKLY_FULL_REFRESH}
    return run.job_name in production or run.tags.get(PIPELINE_TAG) in production


def record_if_production(store: ArtifactStore, run: DagsterRun) -> str | None:
    """Point ``latest_production.json`` at ``run`` when it is a production run (its dbt step
    has just succeeded); the message to log, ``None`` when nothing was to be done. Never
    raises: the pointer is bookkeeping, and must not fail a production run."""
    if not is_production_run(run):
        return None
    try:
        record_production_state(store, run.run_id, created_at=time.time())
    except ArtifactStoreError as error:
        return f"Production state NOT recorded for slim CI ({error}); the previous one stays."
    return f"Production state for slim CI: this run ({store.describe('latest_production.json')})"


def inherited_state(instance: DagsterInstance, run: DagsterRun) -> str | None:
    """``CI_STATE_TAG`` of the run itself or, nearest first, of the runs it re-executes or
    retries (the tag is written by the op, after launch, so a child may not have copied it)."""
    for member in reversed(run_lineage(instance, run.run_id)):
        value = member.tags.get(CI_STATE_TAG)
        if value:
            return value
    return None


def is_slim_ci_run(instance: DagsterInstance, run_id: str) -> bool:
    """Whether ``run_id`` is a slim CI run or a recovery of one (whose assets are ``ci/…``)."""
    from orchestration.jobs import SLIM_CI

    run = instance.get_run_by_id(run_id)
    if run is None:
        return False
    return run.job_name == SLIM_CI or inherited_state(instance, run) is not None


def resolve_state(
    instance: DagsterInstance, run: DagsterRun, store: ArtifactStore, configured: str | None
) -> ProductionState:
    """Run config first (a production run named on purpose), then the lineage's tag, then
    the latest production pointer."""
    if configured:
        if manifest_key(store, configured) is None:
            raise ConfigurationError(
                f"production_run_id {configured!r} has no manifest.json in the artifact store "
                f"{store.uri}; name a run of daily_pipeline or weekly_full_refresh whose "
                "artifacts are stored, or leave production_run_id unset for the latest one."
            )
        return ProductionState(configured, "named in run config")
    inherited = inherited_state(instance, run)
    if inherited:
        run_id = None if inherited == CI_NO_STATE else inherited
        return ProductionState(run_id, "the one the run it recovers used")
    latest = read_production_state(store)
    if latest is None:
        return ProductionState(
            None, "no production run has succeeded with artifacts in this store yet"
        )
    return ProductionState(latest, "the latest successful production run")


@contextlib.contextmanager
def state_folder(store: ArtifactStore, state: ProductionState) -> Iterator[Path | None]:
    """A temporary folder holding the production ``manifest.json`` (dbt's ``--state``), for
    the invocations of one op; ``None`` without a production state."""
    if state.run_id is None:
        yield None
        return
    key = manifest_key(store, state.run_id)
    if key is None:
        raise ConfigurationError(
            f"Production run {state.run_id} has no manifest.json in {store.uri} any more; "
            "launch slim_ci with ops.slim_ci_dbt_models.config.production_run_id naming "
            "another production run."
        )
    with tempfile.TemporaryDirectory(prefix="orchestration-ci-state-") as folder:
        (Path(folder) / "manifest.json").write_bytes(store.get_bytes(key))
        yield Path(folder)


@contextlib.contextmanager
def ci_settings(settings: Settings) -> Iterator[Settings]:
    """The settings dbt runs with in slim CI: target ``DBT_CI_TARGET`` of the project's own
    profile when set, else a temporary copy of the profile with target ``orchestration_ci``
    (production's target, schema ``ci``; ``orchestration.dbt.profile.write_ci_profile``)."""
    if settings.dbt_ci_target:
        yield dataclasses.replace(settings, dbt_target=settings.dbt_ci_target)
        return
    with tempfile.TemporaryDirectory(prefix="orchestration-ci-profile-") as folder:
        target = write_ci_profile(settings, Path(folder))
        yield dataclasses.replace(settings, dbt_target=target, dbt_profiles_dir=Path(folder))
