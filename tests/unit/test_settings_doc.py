"""The README's configuration table and the settings code describe the same variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration.errors import ConfigurationError
from orchestration.settings import REPO_ROOT, SETTINGS_DOC, load_settings


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name, (default, _) in SETTINGS_DOC.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"{name} missing from README"
        assert default.strip("`") in row, f"{name}: default {default!r} not in {row!r}"


def test_every_variable_the_code_reads_is_documented() -> None:
    source = (REPO_ROOT / "orchestration" / "settings.py").read_text()
    read = set(re.findall(r'"((?:ORCHESTRATION|DBT|DUCKDB)_[A-Z_]+)"', source))
    documented = {part for name in SETTINGS_DOC for part in re.findall(r"[A-Z_]{4,}", name)}
    assert read <= documented | {"DBT_POSTGRES_HOST"}, read - documented


def test_a_bad_number_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRATION_RETRY_MAX_ATTEMPTS='three'"):
        load_settings({"ORCHESTRATION_RETRY_MAX_ATTEMPTS": "three"})


def test_a_missing_dbt_project_says_where_to_point(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="holds no dbt_project.yml"):
        load_settings({"DBT_PROJECT_DIR": str(tmp_path)})


# Documented variable → the Settings field it sets and how to read its documented default.
# Written by hand; a variable missing here must be listed in NOT_COMPARED with the reason.
AS_INT, AS_FLOAT, AS_BOOL, AS_TEXT, AS_PATH = "int", "float", "bool", "text", "path"
COMPARED = {
    "DBT_PROJECT_DIR": ("dbt_project_dir", AS_PATH),
    "DUCKDB_PATH": ("duckdb_path", AS_PATH),
    "ORCHESTRATION_ARTIFACTS_URI": ("artifacts_uri", AS_PATH),
    "ORCHESTRATION_FAULTS_FILE": ("faults_file", AS_PATH),
    "ORCHESTRATION_FAULTS_ENABLED": ("faults_enabled", AS_BOOL),
    "ORCHESTRATION_SLIM_CI": ("slim_ci", AS_BOOL),
    "ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS": ("dbt_command_timeout_seconds", AS_FLOAT),
    "ORCHESTRATION_DBT_FORK_SERVER": ("dbt_fork_server", AS_BOOL),
    "ORCHESTRATION_DAILY_CRON": ("daily_cron", AS_TEXT),
    "ORCHESTRATION_WEEKLY_CRON": ("weekly_cron", AS_TEXT),
    "ORCHESTRATION_TIMEZONE": ("timezone", AS_TEXT),
    "ORCHESTRATION_SCHEDULES_RUNNING": ("schedules_running", AS_BOOL),
    "ORCHESTRATION_FX_DAYS": ("fx_days", AS_INT),
    "ORCHESTRATION_MICROBATCH_DAYS": ("microbatch_days", AS_INT),
    "ORCHESTRATION_CRM_COMPANIES": ("crm_companies", AS_INT),
    "ORCHESTRATION_CRM_DEALS": ("crm_deals", AS_INT),
    "ORCHESTRATION_REPORT_MODEL": ("report_model", AS_TEXT),
    "ORCHESTRATION_SOURCE_FRESHNESS": ("source_freshness", AS_BOOL),
    "ORCHESTRATION_UPLOAD_ATTEMPTS": ("upload_attempts", AS_INT),
    "ORCHESTRATION_UPLOAD_BACKOFF_SECONDS": ("upload_backoff_seconds", AS_FLOAT),
    "ORCHESTRATION_SELECTOR_THRESHOLD": ("selector_threshold", AS_INT),
    "ORCHESTRATION_RETRY_SENSOR_RUNNING": ("retry_sensor_running", AS_BOOL),
    "ORCHESTRATION_RETRY_SENSOR_INTERVAL_SECONDS": ("retry_sensor_interval_seconds", AS_INT),
    "ORCHESTRATION_RETRY_MAX_ATTEMPTS": ("retry_max_attempts", AS_INT),
    "ORCHESTRATION_RETRY_BACKOFF_SECONDS": ("retry_backoff_seconds", AS_FLOAT),
    "ORCHESTRATION_RETRY_BACKOFF_FACTOR": ("retry_backoff_factor", AS_FLOAT),
    "ORCHESTRATION_RETRY_BACKOFF_MAX_SECONDS": ("retry_backoff_max_seconds", AS_FLOAT),
    "ORCHESTRATION_RETRY_UNKNOWN_ERRORS": ("retry_unknown_errors", AS_BOOL),
}
NOT_COMPARED = {
    "DBT_PROFILES_DIR": "documented as 'the project dir', checked below",
    "DBT_TARGET": "dbt's profile decides; Settings holds None",
    "DBT_CI_TARGET": "unset: slim CI derives a target with schema `ci`; Settings holds None",
    "DBT_THREADS": "read by profiles.yml, not by Settings",
    "DBT_POSTGRES_HOST / _PORT / _USER / _PASSWORD / _DBNAME / _SCHEMA": "read by profiles.yml",
    "AWS_ENDPOINT_URL": "read by boto3",
    "ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS": "'empty', checked below",
    "ORCHESTRATION_ERROR_PATTERNS_FILE": "'built-in', checked below",
    "ORCHESTRATION_ALERT_WEBHOOK_URL": "'unset', checked below",
    **{
        name: "dbt Cloud is off unless configured, checked below"
        for name in (
            "DBT_CLOUD_ACCOUNT_ID",
            "DBT_CLOUD_TOKEN",
            "DBT_CLOUD_URL",
            "DBT_CLOUD_PROJECT_ID",
            "DBT_CLOUD_ENVIRONMENT_ID",
            "DBT_CLOUD_JOB_ID",
            "DBT_CLOUD_RUN_TIMEOUT_SECONDS",
        )
    },
}


def _documented(default: str, kind: str) -> object:
    token = default.strip("`").split(" (")[0]  # "0 (`make run/dev/test/bench`: 1)" → "0"
    if kind == AS_INT:
        return int(token)
    if kind == AS_FLOAT:
        return float(token)
    if kind == AS_BOOL:
        assert token in {"0", "1"}, default
        return token == "1"
    if kind == AS_PATH:
        return REPO_ROOT / token.rstrip("/")
    return token


def test_the_documented_defaults_are_the_defaults_load_settings_uses() -> None:
    assert set(COMPARED) | set(NOT_COMPARED) == set(SETTINGS_DOC)
    settings = load_settings({})
    for name, (field, kind) in COMPARED.items():
        expected = _documented(SETTINGS_DOC[name][0], kind)
        actual = getattr(settings, field)
        if kind == AS_PATH:
            actual = Path(actual)
        assert actual == expected, f"{name}: documented {expected!r}, load_settings {actual!r}"
        assert type(actual) is type(expected) or kind == AS_PATH, name
    assert settings.dbt_profiles_dir == settings.dbt_project_dir
    assert settings.dbt_target is None
    assert settings.dbt_ci_target is None
    assert settings.artifacts_extra_locations == ()
    assert settings.error_patterns_file is None
    assert settings.alert_webhook_url is None
    assert settings.dbt_cloud is None


def test_dbt_cloud_is_off_unless_configured_and_half_a_configuration_is_refused() -> None:
    assert load_settings({}).dbt_cloud is None
    with pytest.raises(ConfigurationError, match="DBT_CLOUD_ENVIRONMENT_ID"):
        load_settings(
            {"DBT_CLOUD_ACCOUNT_ID": "1", "DBT_CLOUD_TOKEN": "t", "DBT_CLOUD_PROJECT_ID": "2"}
        )
    cloud = load_settings(
        {
            "DBT_CLOUD_ACCOUNT_ID": "1",
            "DBT_CLOUD_TOKEN": "secret-token",
            "DBT_CLOUD_PROJECT_ID": "2",
            "DBT_CLOUD_ENVIRONMENT_ID": "3",
            "DBT_CLOUD_URL": "https://emea.dbt.example/",
        }
    ).dbt_cloud
    assert cloud is not None
    assert (cloud.url, cloud.job_id, cloud.run_timeout_seconds) == (
        "https://emea.dbt.example",
        None,
        3600.0,
    )
    assert "secret-token" not in repr(cloud)  # settings printed in a log never carry it
