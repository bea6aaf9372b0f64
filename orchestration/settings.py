"""Environment → typed settings.

Read inside functions (``load_settings()``), never at import time: the webserver, the daemon,
run workers and tests each build their own environment, and a value frozen at import would
silently ignore it. This is also the one place that knows where the repository lives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_CLOUD_DEFAULT_URL = "https://cloud.getdbt.com"

# name → (default shown in the README, description). The README's configuration table is
# checked against this mapping by a test, so the docs cannot drift from the code.
SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "DBT_PROJECT_DIR": ("dbt_project/", "dbt project to orchestrate (any dbt project works)"),
    "DBT_PROFILES_DIR": ("the project dir", "folder holding profiles.yml"),
    "DBT_TARGET": ("profile default (`duckdb`)", "dbt target: `duckdb` or `postgres`"),
    "DBT_CI_TARGET": (
        "production target, schema `ci`",
        "dbt target `slim_ci` builds into (a target of the project's profile)",
    ),
    "ORCHESTRATION_SLIM_CI": (
        "0",
        "1 = the `slim_ci` job and its `ci/…` copies of the dbt assets (doubles the dbt assets "
        "the code location loads)",
    ),
    "DBT_THREADS": ("4", "dbt threads (read by our profiles.yml)"),
    "DUCKDB_PATH": ("data/warehouse.duckdb", "DuckDB warehouse file"),
    "DBT_POSTGRES_HOST / _PORT / _USER / _PASSWORD / _DBNAME / _SCHEMA": (
        "localhost / 5432 / postgres / '' / warehouse / analytics",
        "warehouse connection for `DBT_TARGET=postgres`",
    ),
    "ORCHESTRATION_ARTIFACTS_URI": (
        ".artifacts/",
        "artifact store: a local path or `s3://bucket/prefix`",
    ),
    "AWS_ENDPOINT_URL": ("AWS default", "S3-compatible endpoint (MinIO, moto, …)"),
    "ORCHESTRATION_FAULTS_FILE": ("data/faults.json", "where injected faults are kept"),
    "ORCHESTRATION_FAULTS_ENABLED": (
        "0 (`make run/dev/test/bench`: 1)",
        "1 = fault injection on (a test and demo tool; off in production)",
    ),
    "ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS": (
        "empty",
        "comma-separated path or `s3://` prefixes `retry_from_artifacts` may also read",
    ),
    "ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS": (
        "1800",
        "timeout of each helper dbt command (`parse`, `deps`, `source freshness`)",
    ),
    "ORCHESTRATION_DBT_FORK_SERVER": (
        "1",
        "1 = a warm run starts dbt from the warm worker's fork server (dbt already imported)",
    ),
    "ORCHESTRATION_DAILY_CRON": ("0 4 * * *", "cron of `daily_pipeline_schedule`"),
    "ORCHESTRATION_WEEKLY_CRON": ("0 5 * * 0", "cron of `weekly_full_refresh_schedule`"),
    "ORCHESTRATION_TIMEZONE": ("UTC", "timezone of both schedules"),
    "ORCHESTRATION_SCHEDULES_RUNNING": ("0", "1 = schedules start enabled"),
    "ORCHESTRATION_FX_DAYS": ("120", "days of exchange rates the ingestion generates"),
    "ORCHESTRATION_MICROBATCH_DAYS": (
        "120",
        "dbt microbatch models build this many days up to today (UTC) per run; 0 = dbt decides",
    ),
    "ORCHESTRATION_CRM_COMPANIES": ("40", "companies the CRM ingestion generates"),
    "ORCHESTRATION_CRM_DEALS": ("400", "deals the CRM ingestion generates"),
    "ORCHESTRATION_REPORT_MODEL": (
        "fct_revenue_by_owner",
        "mart the downstream Python report reads (no report if the model is absent)",
    ),
    "ORCHESTRATION_SOURCE_FRESHNESS": ("1", "0 = no `dbt source freshness` checks in the jobs"),
    "ORCHESTRATION_UPLOAD_ATTEMPTS": ("4", "artifact upload attempts before a warning"),
    "ORCHESTRATION_UPLOAD_BACKOFF_SECONDS": ("0.5", "first upload retry delay (doubles)"),
    "ORCHESTRATION_SELECTOR_THRESHOLD": (
        "100",
        "above this many dbt nodes, selection goes through a generated selectors.yml",
    ),
    "ORCHESTRATION_RETRY_SENSOR_RUNNING": ("1", "1 = `retry_failed_assets_sensor` starts on"),
    "ORCHESTRATION_RETRY_SENSOR_INTERVAL_SECONDS": ("30", "sensor tick interval"),
    "ORCHESTRATION_RETRY_MAX_ATTEMPTS": ("3", "automatic retries per failure chain"),
    "ORCHESTRATION_RETRY_BACKOFF_SECONDS": ("60", "wait before the first automatic retry"),
    "ORCHESTRATION_RETRY_BACKOFF_FACTOR": ("2", "backoff multiplier per attempt"),
    "ORCHESTRATION_RETRY_BACKOFF_MAX_SECONDS": ("900", "backoff cap"),
    "ORCHESTRATION_RETRY_UNKNOWN_ERRORS": ("0", "1 = also retry unclassified errors"),
    "ORCHESTRATION_ERROR_PATTERNS_FILE": ("built-in", "JSON file replacing the error patterns"),
    "ORCHESTRATION_ALERT_WEBHOOK_URL": ("unset", "Slack-compatible webhook for give-ups"),
    "DBT_CLOUD_ACCOUNT_ID": ("unset", "set = dbt runs on dbt Cloud (see the dbt Cloud section)"),
    "DBT_CLOUD_TOKEN": ("unset", "dbt Cloud API token; environment only, never in run config"),
    "DBT_CLOUD_URL": (DBT_CLOUD_DEFAULT_URL, "dbt Cloud base URL (single-tenant hosts too)"),
    "DBT_CLOUD_PROJECT_ID": ("unset", "dbt Cloud project the assets come from"),
    "DBT_CLOUD_ENVIRONMENT_ID": ("unset", "dbt Cloud environment the runs use"),
    "DBT_CLOUD_JOB_ID": (
        "dagster-dbt's ad hoc job",
        "dbt Cloud job the dbt op triggers (its steps replaced by the planned selection)",
    ),
    "DBT_CLOUD_RUN_TIMEOUT_SECONDS": (
        "3600",
        "a dbt Cloud run not finished by then is cancelled (recovered like a killed run)",
    ),
}


@dataclass(frozen=True)
class DbtCloudSettings:
    """Where dbt runs when it runs on dbt Cloud. The token is kept out of ``repr`` so that
    no log line or error message that prints settings can carry it."""

    account_id: int
    token: str = field(repr=False)
    url: str
    project_id: int
    environment_id: int
    job_id: int | None
    run_timeout_seconds: float


@dataclass(frozen=True)
class Settings:
    """Everything the project reads from the environment, typed and resolved."""

    dbt_project_dir: Path
    dbt_profiles_dir: Path
    dbt_target: str | None
    dbt_ci_target: str | None
    slim_ci: bool
    duckdb_path: Path
    artifacts_uri: str
    faults_file: Path
    faults_enabled: bool
    artifacts_extra_locations: tuple[str, ...]
    dbt_command_timeout_seconds: float
    dbt_fork_server: bool
    daily_cron: str
    weekly_cron: str
    timezone: str
    schedules_running: bool
    fx_days: int
    microbatch_days: int
    crm_companies: int
    crm_deals: int
    report_model: str
    source_freshness: bool
    upload_attempts: int
    upload_backoff_seconds: float
    selector_threshold: int
    retry_sensor_running: bool
    retry_sensor_interval_seconds: int
    retry_max_attempts: int
    retry_backoff_seconds: float
    retry_backoff_factor: float
    retry_backoff_max_seconds: float
    retry_unknown_errors: bool
    error_patterns_file: Path | None
    alert_webhook_url: str | None
    dbt_cloud: DbtCloudSettings | None = None
    """None = dbt runs locally (dbt Core); set = the dbt op runs on dbt Cloud."""

    @property
    def artifacts_on_s3(self) -> bool:
        return self.artifacts_uri.startswith("s3://")

    def dbt_env(self) -> dict[str, str]:
        """Environment every dbt subprocess needs on top of ``os.environ``."""
        env = {"DUCKDB_PATH": str(self.duckdb_path)}
        if self.dbt_target:
            env["DBT_TARGET"] = self.dbt_target
        return env


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    if not raw:
        return default
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not an integer; unset it or give a number."
        ) from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}.")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a number; unset it or give a number."
        ) from None
    if value < 0:
        raise ConfigurationError(f"{name}={value} must not be negative.")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use 1 or 0.")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    project_dir = _path(env, "DBT_PROJECT_DIR", REPO_ROOT / "dbt_project")
    if not (project_dir / "dbt_project.yml").is_file():
        raise ConfigurationError(
            f"DBT_PROJECT_DIR={project_dir} holds no dbt_project.yml; point it at a dbt project."
        )
    artifacts_uri = env.get("ORCHESTRATION_ARTIFACTS_URI") or str(REPO_ROOT / ".artifacts")
    if not artifacts_uri.startswith("s3://"):
        artifacts_uri = str(_path({"p": artifacts_uri}, "p", REPO_ROOT / ".artifacts"))
    patterns_file = env.get("ORCHESTRATION_ERROR_PATTERNS_FILE")
    return Settings(
        dbt_project_dir=project_dir,
        dbt_profiles_dir=_path(env, "DBT_PROFILES_DIR", project_dir),
        dbt_target=env.get("DBT_TARGET") or None,
        dbt_ci_target=env.get("DBT_CI_TARGET") or None,
        slim_ci=_bool(env, "ORCHESTRATION_SLIM_CI", False),
        duckdb_path=_path(env, "DUCKDB_PATH", REPO_ROOT / "data" / "warehouse.duckdb"),
        artifacts_uri=artifacts_uri,
        faults_file=_path(env, "ORCHESTRATION_FAULTS_FILE", REPO_ROOT / "data" / "faults.json"),
        faults_enabled=_bool(env, "ORCHESTRATION_FAULTS_ENABLED", False),
        artifacts_extra_locations=tuple(
            item.strip()
            for item in (env.get("ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS") or "").split(",")
            if item.strip()
        ),
        dbt_command_timeout_seconds=_float(
            env, "ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS", 1800.0
        ),
        dbt_fork_server=_bool(env, "ORCHESTRATION_DBT_FORK_SERVER", True),
        daily_cron=env.get("ORCHESTRATION_DAILY_CRON") or "0 4 * * *",
        weekly_cron=env.get("ORCHESTRATION_WEEKLY_CRON") or "0 5 * * 0",
        timezone=env.get("ORCHESTRATION_TIMEZONE") or "UTC",
        schedules_running=_bool(env, "ORCHESTRATION_SCHEDULES_RUNNING", False),
        fx_days=_int(env, "ORCHESTRATION_FX_DAYS", 120, minimum=1),
        microbatch_days=_int(env, "ORCHESTRATION_MICROBATCH_DAYS", 120, minimum=0),
        crm_companies=_int(env, "ORCHESTRATION_CRM_COMPANIES", 40, minimum=1),
        crm_deals=_int(env, "ORCHESTRATION_CRM_DEALS", 400, minimum=1),
        report_model=env.get("ORCHESTRATION_REPORT_MODEL") or "fct_revenue_by_owner",
        source_freshness=_bool(env, "ORCHESTRATION_SOURCE_FRESHNESS", True),
        upload_attempts=_int(env, "ORCHESTRATION_UPLOAD_ATTEMPTS", 4, minimum=1),
        upload_backoff_seconds=_float(env, "ORCHESTRATION_UPLOAD_BACKOFF_SECONDS", 0.5),
        selector_threshold=_int(env, "ORCHESTRATION_SELECTOR_THRESHOLD", 100, minimum=1),
        retry_sensor_running=_bool(env, "ORCHESTRATION_RETRY_SENSOR_RUNNING", True),
        retry_sensor_interval_seconds=_int(
            env, "ORCHESTRATION_RETRY_SENSOR_INTERVAL_SECONDS", 30, minimum=5
        ),
        retry_max_attempts=_int(env, "ORCHESTRATION_RETRY_MAX_ATTEMPTS", 3),
        retry_backoff_seconds=_float(env, "ORCHESTRATION_RETRY_BACKOFF_SECONDS", 60.0),
        retry_backoff_factor=_float(env, "ORCHESTRATION_RETRY_BACKOFF_FACTOR", 2.0),
        retry_backoff_max_seconds=_float(env, "ORCHESTRATION_RETRY_BACKOFF_MAX_SECONDS", 900.0),
        retry_unknown_errors=_bool(env, "ORCHESTRATION_RETRY_UNKNOWN_ERRORS", False),
        error_patterns_file=Path(patterns_file) if patterns_file else None,
        alert_webhook_url=env.get("ORCHESTRATION_ALERT_WEBHOOK_URL") or None,
        dbt_cloud=_dbt_cloud(env),
    )


_DBT_CLOUD_REQUIRED = (
    "DBT_CLOUD_ACCOUNT_ID",
    "DBT_CLOUD_TOKEN",
    "DBT_CLOUD_PROJECT_ID",
    "DBT_CLOUD_ENVIRONMENT_ID",
)


def _dbt_cloud(env: Mapping[str, str]) -> DbtCloudSettings | None:
    """dbt Cloud is on when any of its ids or the token is set; then all four are needed.
    Half a configuration is an error, not a silent fallback to local dbt: a team that set
    the token expects its runs on dbt Cloud."""
    present = [name for name in _DBT_CLOUD_REQUIRED if env.get(name)]
    if not present:
        return None
    missing = [name for name in _DBT_CLOUD_REQUIRED if not env.get(name)]
    if missing:
        raise ConfigurationError(
            f"dbt Cloud is half configured: {', '.join(present)} set, {', '.join(missing)} "
            "not. Set them all to run dbt on dbt Cloud, or unset them all to run dbt locally."
        )
    job_id = env.get("DBT_CLOUD_JOB_ID")
    return DbtCloudSettings(
        account_id=_int(env, "DBT_CLOUD_ACCOUNT_ID", 0, minimum=1),
        token=env["DBT_CLOUD_TOKEN"],
        url=(env.get("DBT_CLOUD_URL") or DBT_CLOUD_DEFAULT_URL).rstrip("/"),
        project_id=_int(env, "DBT_CLOUD_PROJECT_ID", 0, minimum=1),
        environment_id=_int(env, "DBT_CLOUD_ENVIRONMENT_ID", 0, minimum=1),
        job_id=_int(env, "DBT_CLOUD_JOB_ID", 0, minimum=1) if job_id else None,
        run_timeout_seconds=_float(env, "DBT_CLOUD_RUN_TIMEOUT_SECONDS", 3600.0),
    )
