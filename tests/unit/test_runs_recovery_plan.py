"""Which runs ran a recovery plan (and so did not decide what they carried over): the tag
the UI's *From failure* sets, or op config naming stored artifacts — never a step selection."""

from __future__ import annotations

from typing import Any

import pytest
from dagster._core.storage.dagster_run import DagsterRun

from orchestration.history.runs import runs_recovery_plan


def run(tags: dict[str, str] | None = None, config: dict[str, Any] | None = None) -> DagsterRun:
    return DagsterRun(
        job_name="daily_pipeline",
        run_id="r2",
        parent_run_id="r1",
        root_run_id="r1",
        step_keys_to_execute=["dbt_models"],
        tags={"dagster/parent_run_id": "r1", **(tags or {})},
        run_config=config or {},
    )


def op_config(**values: Any) -> dict[str, Any]:
    return {"ops": {"dbt_models": {"config": values}}}


@pytest.mark.parametrize(
    ("tags", "config", "expected"),
    [
        ({"dagster/is_resume_retry": "true"}, None, True),  # UI From failure
        (None, op_config(retry_from_run_id="r0"), True),
        (None, op_config(retry_from_artifacts="external/nightly"), True),
        # UI Re-execute selected: a parent and a partial step selection, no tag
        ({"dagster/step_selection": 'name:"dbt_models"', "dagster/from_ui": "true"}, None, False),
        ({"dagster/is_resume_retry": "false"}, op_config(full_refresh=True), False),
        ({"dagster/is_asset_resume_retry": "true"}, None, False),  # From asset failure
        (None, op_config(retry_from_run_id=""), False),
    ],
)
def test_only_the_tag_or_artifacts_config_make_a_recovery_run(
    tags: dict[str, str] | None, config: dict[str, Any] | None, expected: bool
) -> None:
    assert runs_recovery_plan(run(tags, config)) is expected
