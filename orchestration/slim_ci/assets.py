"""The dbt op of ``slim_ci``: the project's models again, as ``ci/…`` assets built in CI.

A fresh run builds ``state:modified+`` against the production manifest (``state.py``), with
``--defer --state`` so an unchanged parent is read from production; every recovery of it
(*From failure*, *From asset failure*, the retry sensor) runs the recovery-aware selection
the production op runs, intersected with ``state:modified+`` against the same manifest: what
Dagster selects from the CI assets includes the unchanged ones the first run never built,
and those must stay production's. CI invocations store their artifacts under their run but
move neither ``latest.json`` nor ``latest_production.json``.
"""

import functools
from collections.abc import Iterator
from typing import Any, Literal

from dagster import AssetExecutionContext, Config
from dagster_dbt import dbt_assets
from pydantic import Field

from orchestration.dbt.assets import run_choice
from orchestration.dbt.project import load_manifest
from orchestration.dbt.selection import choose_selection
from orchestration.resources import ArtifactStoreResource
from orchestration.settings import Settings, load_settings
from orchestration.slim_ci.guard import check_ci_target
from orchestration.slim_ci.state import ProductionState, ci_settings, resolve_state, state_folder
from orchestration.slim_ci.translator import SlimCiTranslator
from orchestration.tags import CI_STATE_TAG

CI_OP_NAME = "slim_ci_dbt_models"
BUILD_ALL = "build_all"
SKIP = "skip"


class SlimCiConfig(Config):
    """Run config of slim CI's dbt op (Launchpad → ops → slim_ci_dbt_models → config)."""

    production_run_id: str | None = Field(
        default=None,
        description="Compare against and defer to this production run's stored manifest "
        "instead of the latest successful production run's.",
    )
    without_production_state: Literal["build_all", "skip"] = Field(
        default=BUILD_ALL,
        description="When no production state is stored yet: build_all = build the whole "
        "project into the CI target (nothing to defer to); skip = build nothing.",
    )
    fail_fast: bool = Field(default=False, description="Pass --fail-fast.")


@functools.cache
def ci_translator() -> SlimCiTranslator:
    return SlimCiTranslator()


def _state_flags(folder: Any) -> dict[str, Any]:
    if folder is None:
        return {}
    return {"state_modified": True, "extra": ["--defer", "--state", str(folder)]}


def build_ci_dbt_assets(settings: Settings) -> Any:
    """slim CI's copy of the dbt assets of ``settings.dbt_project_dir``, keys under ``ci/``."""
    manifest = load_manifest(settings)

    @dbt_assets(manifest=manifest, dagster_dbt_translator=ci_translator(), name=CI_OP_NAME)
    def slim_ci_dbt_models(
        context: AssetExecutionContext, config: SlimCiConfig, artifacts: ArtifactStoreResource
    ) -> Iterator[Any]:
        run_settings = load_settings()
        manifest = load_manifest(run_settings)
        store = artifacts.open()
        state = resolve_state(context.instance, context.run, store, config.production_run_id)
        context.instance.add_run_tags(context.run.run_id, {CI_STATE_TAG: state.tag_value})
        context.log.info(state.describe())
        if not _should_build(context, state, config):
            return
        choice = choose_selection(
            context,
            manifest=manifest,
            translator=ci_translator(),
            store=store,
            retry_from_run_id=None,
            retry_from_artifacts=None,
        )
        with ci_settings(run_settings) as settings, state_folder(store, state) as folder:
            check_ci_target(manifest, settings)
            context.log.info(
                f"Slim CI builds into dbt target {settings.dbt_target}; no relation of it "
                "is one production writes."
            )
            yield from run_choice(
                context,
                choice,
                settings=settings,
                manifest=manifest,
                translator=ci_translator(),
                store=store,
                fail_fast=config.fail_fast,
                move_latest=False,
                **_state_flags(folder),
            )

    return slim_ci_dbt_models


def _should_build(
    context: AssetExecutionContext, state: ProductionState, config: SlimCiConfig
) -> bool:
    """Without a production state, the user's choice: everything, or nothing."""
    if state.run_id is not None:
        return True
    if config.without_production_state == SKIP:
        context.log.warning(
            "Slim CI built nothing: no production state to compare against, and "
            "without_production_state is 'skip'. Run daily_pipeline once (or set "
            "production_run_id, or without_production_state: build_all)."
        )
        return False
    context.log.warning(
        "Slim CI builds the WHOLE project into the CI target: no production state to compare "
        "against (without_production_state: build_all). Run daily_pipeline once to store one."
    )
    return True
