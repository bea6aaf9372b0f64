"""Source freshness as warn-only asset checks on the ingestion assets.

``dbt source freshness`` runs after ingestion in the same run; each source table gets a
``source_freshness`` check result in the UI. The check is non-blocking and WARN severity, and
any failure to run it (dbt error, missing table) becomes a failed WARN result, never a failed
step: a stale feed is worth a warning, not a lost nightly build.
"""

import json
import subprocess
import uuid
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    multi_asset_check,
)

from orchestration.artifacts.upload import store_invocation_artifacts
from orchestration.dbt.project import dbt_command_args, dbt_subprocess_env
from orchestration.resources import ArtifactStoreResource
from orchestration.settings import load_settings

CHECK_NAME = "source_freshness"
TIMEOUT_SETTING = "ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS"


def source_unique_ids(
    manifest: Mapping[str, Any], keys: Collection[AssetKey]
) -> dict[AssetKey, str]:
    wanted = set(keys)
    result: dict[AssetKey, str] = {}
    for unique_id, source in manifest.get("sources", {}).items():
        key = AssetKey([source["source_name"], source["name"]])
        if key in wanted and source.get("freshness") and source.get("loaded_at_field"):
            result[key] = unique_id
    return result


def run_source_freshness(
    args: list[str], *, env: Mapping[str, str], target: Path, timeout_seconds: float
) -> tuple[dict[str, dict[str, Any]], str]:
    """Run ``dbt source freshness``; return sources.json's results by unique_id and a problem.

    Never raises: a stale feed or a broken check is worth a warning, not a lost nightly build.
    The timeout matters because a warehouse that accepts the connection and never answers
    would otherwise hold the whole run (and its worker) forever.
    """
    results: dict[str, dict[str, Any]] = {}
    problem = ""
    try:
        completed = subprocess.run(
            args,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_seconds,
        )
        sources_json = target / "sources.json"
        if sources_json.is_file():
            for item in json.loads(sources_json.read_text()).get("results", []):
                results[item["unique_id"]] = item
        if not results:
            last = (completed.stdout + completed.stderr).strip().splitlines()[-1:]
            problem = last[0] if last else f"dbt exited {completed.returncode}"
    except subprocess.TimeoutExpired:
        problem = (
            f"dbt source freshness did not finish within {timeout_seconds:g} s and was "
            f"stopped; check that the warehouse answers, or raise {TIMEOUT_SETTING}."
        )
    except Exception as error:  # never fail the pipeline over freshness
        problem = f"{type(error).__name__}: {error}"
    return results, problem


def build_freshness_checks(
    manifest: Mapping[str, Any], ingested_keys: Collection[AssetKey]
) -> list[AssetChecksDefinition]:
    sources = source_unique_ids(manifest, ingested_keys)
    if not sources:
        return []

    @multi_asset_check(
        name="dbt_source_freshness",
        specs=[
            AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                blocking=False,
                description="dbt source freshness (warns, never fails the run)",
            )
            for key in sorted(sources, key=lambda k: k.to_user_string())
        ],
        can_subset=True,
    )
    def dbt_source_freshness(
        context: AssetCheckExecutionContext, artifacts: ArtifactStoreResource
    ) -> Iterator[AssetCheckResult]:
        selected_keys = {ck.asset_key for ck in context.selected_asset_check_keys}
        selected = {key: uid for key, uid in sources.items() if key in selected_keys}
        results, problem = _freshness_of(context, artifacts, selected)
        for key, unique_id in selected.items():
            yield _check_result(key, results.get(unique_id), problem)

    return [dbt_source_freshness]


def _freshness_of(
    context: AssetCheckExecutionContext,
    artifacts: ArtifactStoreResource,
    selected: Mapping[AssetKey, str],
) -> tuple[dict[str, dict[str, Any]], str]:
    """Run ``dbt source freshness`` on the selected sources and store its artifacts."""
    settings = load_settings()
    label = f"dbt_source_freshness-{uuid.uuid4().hex[:8]}"
    run_id = context.run.run_id
    target = settings.dbt_project_dir / "target" / "invocations" / f"{run_id[:8]}-{label}"
    args = dbt_command_args(settings, "source", "freshness")
    args += ["--select", *(f"source:{uid.split('.', 2)[2]}" for uid in selected.values())]
    args += ["--target-path", str(target), "--log-path", str(target)]
    results, problem = run_source_freshness(
        args,
        env=dbt_subprocess_env(settings),
        target=target,
        timeout_seconds=settings.dbt_command_timeout_seconds,
    )
    if target.is_dir():
        report = store_invocation_artifacts(
            artifacts.open(),
            run_id=run_id,
            label=label,
            command="source freshness",
            step_key="dbt_source_freshness",
            succeeded=not problem,
            target_path=target,
            attempts=settings.upload_attempts,
            backoff_seconds=settings.upload_backoff_seconds,
        )
        if not report.complete:
            context.log.warning(report.warning_text())
    return results, problem


def _check_result(key: AssetKey, item: Mapping[str, Any] | None, problem: str) -> AssetCheckResult:
    """A WARN check result from one entry of sources.json (or its absence)."""
    status = item.get("status") if item else "not checked"
    metadata: dict[str, Any] = {"status": status}
    if item:
        metadata["max_loaded_at"] = str(item.get("max_loaded_at"))
        age = item.get("max_loaded_at_time_ago_in_s")
        if age is not None:
            metadata["age_hours"] = round(float(age) / 3600, 2)
    if problem:
        metadata["problem"] = problem
    return AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=status == "pass",
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
    )
