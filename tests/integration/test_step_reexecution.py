"""The UI's *Re-execute → Selected step(s)*, sent as the exact GraphQL request the UI sends.

The request is built the way dagster-webserver's UI builds it (``ui-core/src/runs/RunUtils.tsx``
``getReexecutionParamsForSelection`` + ``launchpad/uiExecutionTags.tsx``): no strategy, but
``executionParams`` with ``stepKeys`` = the selected steps, the parent run's tags minus
``dagster/is_resume_retry`` and ``dagster/step_selection``, plus ``dagster/parent_run_id``,
``dagster/root_run_id``, ``dagster/step_selection`` (the selection query, ``name:"<step>"``
for a clicked step) and ``dagster/from_ui=true``; the parent's run config, asset selection and
asset check selection (``[]`` when the parent has none).

It goes through dagster-graphql's own ``launchPipelineReexecution`` resolver in this process
(``create_valid_pipeline_run`` → ``instance.submit_run``), and the run executes in this process
too (``SyncInMemoryRunLauncher``): the run the op sees — tags, step keys, asset selection,
parent — is the one the webserver would create, without starting a webserver and a daemon.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from dagster import AssetKey, execute_job
from dagster._core.definitions.reconstruct import build_reconstructable_job

from orchestration.artifacts.store import open_store
from orchestration.settings import REPO_ROOT
from tests.conftest import BOTH_STORAGES, Pipeline, statuses, stored_run_results
from tests.dbt_graph import all_models

pytestmark = [pytest.mark.integration, BOTH_STORAGES]

LOCATION = "orchestration"
REPOSITORY = "__repository__"

# The UI's mutation (RunUtils.tsx LAUNCH_PIPELINE_REEXECUTION_MUTATION), with the run id
# asked for by name.
LAUNCH_PIPELINE_REEXECUTION = """
mutation LaunchPipelineReexecution(
  $executionParams: ExecutionParams
  $reexecutionParams: ReexecutionParams
) {
  launchPipelineReexecution(
    executionParams: $executionParams
    reexecutionParams: $reexecutionParams
  ) {
    __typename
    ... on LaunchRunSuccess { run { id pipelineName rootRunId parentRunId } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}"""

# The parent run's fields getReexecutionParamsForSelection reads (the UI's RunFragment).
RUN_FOR_REEXECUTION = """
query RunForReexecution($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      id
      rootRunId
      pipelineName
      mode
      runConfigYaml
      solidSelection
      tags { key value }
      assetSelection { path }
      assetCheckSelection { assetKey { path } name }
    }
  }
}"""

HIDDEN_TAG_KEYS = ("dagster/is_resume_retry", "dagster/step_selection")
UI_EXECUTION_TAGS = [{"key": "dagster/from_ui", "value": "true"}]


@contextmanager
def graphql_context(pipeline: Pipeline) -> Iterator[Any]:
    """A webserver's request context over ``orchestration.definitions``, loaded in-process,
    on ``pipeline``'s instance with runs executed synchronously where they are submitted."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    with (pipeline.dagster_home / "dagster.yaml").open("a") as config:
        config.write(
            "run_launcher:\n  module: dagster._core.launcher.sync_in_memory_run_launcher\n"
            "  class: SyncInMemoryRunLauncher\n"
        )
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            module_name="orchestration.definitions",
            attribute="defs",
            working_directory=str(REPO_ROOT),
        ),
        location_name=LOCATION,
    )
    with (
        pipeline.instance() as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_context,
    ):
        yield process_context.create_request_context()


def graphql(context: Any, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    from dagster_graphql.test.utils import execute_dagster_graphql

    result = execute_dagster_graphql(context, query, variables)
    assert not result.errors, result.errors
    return result.data


def ui_selected_steps_params(run: dict[str, Any], step_keys: Sequence[str]) -> dict[str, Any]:
    """``getReexecutionParamsForSelection`` + ``paramsWithUIExecutionTags``, line by line,
    for steps clicked in the run's Gantt chart (one step: the query ``name:"<step>"``)."""
    query = " or ".join(f'name:"{key}"' for key in step_keys)
    root = run["rootRunId"] or run["id"]
    tags = [
        {"key": t["key"], "value": t["value"]}
        for t in run["tags"]
        if t["key"] not in HIDDEN_TAG_KEYS
    ]
    tags += [
        {"key": "dagster/parent_run_id", "value": run["id"]},
        {"key": "dagster/root_run_id", "value": root},
        {"key": "dagster/step_selection", "value": query},
    ]
    tags = [t for t in tags if t["key"] not in {u["key"] for u in UI_EXECUTION_TAGS}]
    return {
        "mode": run["mode"],
        "runConfigData": run["runConfigYaml"],
        "executionMetadata": {
            "parentRunId": run["id"],
            "rootRunId": root,
            "tags": tags + UI_EXECUTION_TAGS,
        },
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "pipelineName": run["pipelineName"],
            "solidSelection": run["solidSelection"],
            "assetSelection": [{"path": a["path"]} for a in run["assetSelection"] or []],
            "assetCheckSelection": [
                {"assetKey": {"path": c["assetKey"]["path"]}, "name": c["name"]}
                for c in run["assetCheckSelection"] or []
            ],
        },
        "stepKeys": list(step_keys),
    }


def reexecute_selected_steps(pipeline: Pipeline, parent_run_id: str, steps: Sequence[str]) -> str:
    """Click the steps in the parent run's page, then *Re-execute selected*; the new run id."""
    with graphql_context(pipeline) as context:
        run = graphql(context, RUN_FOR_REEXECUTION, {"runId": parent_run_id})["runOrError"]
        params = ui_selected_steps_params(run, steps)
        launched = graphql(context, LAUNCH_PIPELINE_REEXECUTION, {"executionParams": params})
    result = launched["launchPipelineReexecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["id"]


def executed_models(pipeline: Pipeline, run_id: str) -> set[str]:
    results = stored_run_results(open_store(pipeline.artifacts_uri), run_id)
    return {m for r in results for m, s in statuses(r).items() if s != "skipped"}


def run_assets(pipeline: Pipeline, asset_keys: Sequence[str]) -> Any:
    """A run of ``daily_pipeline`` for some of its assets (the UI's *Materialize selected*)."""
    job = build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=("daily_pipeline",)
    )
    with pipeline.instance() as instance:
        return execute_job(
            job,
            instance=instance,
            asset_selection=[AssetKey.from_user_string(k) for k in asset_keys],
            raise_on_error=False,
        )


def test_selected_dbt_step_of_a_successful_run_rebuilds_every_model(pipeline: Pipeline) -> None:
    parent = pipeline.run_job("daily_pipeline")
    assert parent.success
    run_id = reexecute_selected_steps(pipeline, parent.run_id, ["dbt_models"])
    with pipeline.instance() as instance:
        run = instance.get_run_by_id(run_id)
    assert run is not None and run.is_success
    assert run.step_keys_to_execute == ["dbt_models"]
    assert run.tags["dagster/step_selection"] == 'name:"dbt_models"'
    assert "dagster/is_resume_retry" not in run.tags
    # What the selection asks for: the whole op, although every model succeeded in the parent.
    assert executed_models(pipeline, run_id) == all_models()


def test_selected_dbt_step_of_an_asset_subset_run_rebuilds_that_subset(
    pipeline: Pipeline,
) -> None:
    assert pipeline.run_job("daily_pipeline").success  # the warehouse holds every table
    models = {"stg_crm__deals", "int_deals__converted", "fct_deals"}
    # With the report the subset run has two steps, so the dbt step alone is a partial one.
    parent = run_assets(pipeline, [*sorted(models), "revenue_report"])
    assert parent.success
    assert executed_models(pipeline, parent.run_id) == models
    run_id = reexecute_selected_steps(pipeline, parent.run_id, ["dbt_models"])
    with pipeline.instance() as instance:
        run = instance.get_run_by_id(run_id)
    assert run is not None and run.is_success
    assert run.asset_selection is not None and AssetKey("fct_deals") in run.asset_selection
    assert executed_models(pipeline, run_id) == models


def daily_pipeline() -> Any:
    return build_reconstructable_job(
        "orchestration.definitions", "job_by_name", reconstructable_args=("daily_pipeline",)
    )


def test_selected_dbt_step_from_python_rebuilds_every_model(pipeline: Pipeline) -> None:
    """The README's Python equivalent of *Re-execute selected*."""
    from dagster import ReexecutionOptions

    parent = pipeline.run_job("daily_pipeline")
    assert parent.success
    with pipeline.instance() as instance:
        options = ReexecutionOptions(parent_run_id=parent.run_id, step_selection=["dbt_models"])
        result = execute_job(daily_pipeline(), instance=instance, reexecution_options=options)
    assert result.success
    assert executed_models(pipeline, result.run_id) == all_models()
