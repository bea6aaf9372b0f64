"""Which warehouse a dbt project's profile points at, for people reading a run summary.

A project brought from elsewhere has its own ``profiles.yml`` (its own DuckDB file, target
names, ``env_var()`` defaults); the summary must name the warehouse dbt really wrote to, not
our default path. dbt's own profile loader needs a whole dbt invocation context, so this reads
the profile the way dbt resolves it for the common cases — ``env_var(name, default)`` and the
``as_number``/``as_bool``/``as_text`` filters, ``DBT_TARGET`` over the profile's default
target, relative DuckDB paths from the project folder (dbt's working directory) — and says
"unresolved" rather than guess when a value needs more of dbt's Jinja.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from orchestration.errors import ConfigurationError
from orchestration.settings import Settings


@dataclass(frozen=True)
class Warehouse:
    adapter: str
    location: str
    target: str
    profile: str

    def describe(self) -> str:
        return f"{self.adapter} {self.location}  (target {self.target} of profile {self.profile})"


def _renderer(env: Mapping[str, str]) -> jinja2.Environment:
    def env_var(name: str, default: str | None = None) -> str:
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(name)
        return default

    jinja = jinja2.Environment(undefined=jinja2.StrictUndefined)
    jinja.globals["env_var"] = env_var
    jinja.filters.update(as_number=float, as_text=str, as_bool=lambda v: str(v).lower() == "true")
    return jinja


def _render(value: Any, jinja: jinja2.Environment) -> Any:
    if isinstance(value, str) and "{" in value:
        return jinja.from_string(value).render()
    return value


def _profile(settings: Settings) -> tuple[dict[str, Any], str, dict[str, Any], str]:
    """(every profile of profiles.yml, the project's profile name, that profile, the target
    dbt resolves: ``DBT_TARGET`` over the profile's default)."""
    project = yaml.safe_load((settings.dbt_project_dir / "dbt_project.yml").read_text())
    profile_name = str(project["profile"])
    profiles = yaml.safe_load((settings.dbt_profiles_dir / "profiles.yml").read_text())
    profile = profiles[profile_name]
    jinja = _renderer({**os.environ, **settings.dbt_env()})
    target = settings.dbt_target or str(_render(profile.get("target", "default"), jinja))
    return profiles, profile_name, profile, target


def resolve_warehouse(settings: Settings) -> Warehouse | None:
    """The resolved target of the project's profile; ``None`` if it cannot be read."""
    try:
        _, profile_name, profile, target = _profile(settings)
        jinja = _renderer({**os.environ, **settings.dbt_env()})
        output = profile["outputs"][target]
        adapter = str(_render(output.get("type", "?"), jinja))
        return Warehouse(adapter, _location(adapter, output, jinja, settings), target, profile_name)
    except (OSError, KeyError, TypeError, yaml.YAMLError, jinja2.TemplateError):
        return None


def _location(
    adapter: str, output: Mapping[str, Any], jinja: jinja2.Environment, settings: Settings
) -> str:
    try:
        if adapter == "duckdb":
            path = str(_render(output.get("path", ":memory:"), jinja))
            if path == ":memory:" or "://" in path or path.startswith("md:"):
                return path
            return str((settings.dbt_project_dir / Path(path).expanduser()).resolve())
        host = _render(output.get("host", output.get("account", "?")), jinja)
        database = _render(output.get("dbname", output.get("database", "?")), jinja)
        schema = _render(output.get("schema", "?"), jinja)
        return f"{host}/{database} schema {schema}"
    except (KeyError, jinja2.TemplateError):
        return "unresolved (see profiles.yml)"


CI_TARGET_NAME = "orchestration_ci"
"""The target slim CI adds to a copy of the profile when ``DBT_CI_TARGET`` is unset."""
CI_SCHEMA = "ci"


def write_ci_profile(settings: Settings, folder: Path) -> str:
    """Write ``folder/profiles.yml``: the project's profiles plus target ``orchestration_ci``,
    the production target with ``schema: ci``; return that target's name.

    This is slim CI's default when ``DBT_CI_TARGET`` is unset: the same warehouse and
    credentials as production, a ``ci`` schema next to the production one (dbt's own
    ``generate_schema_name`` then puts custom schemas at ``ci_<custom>``). The copy keeps
    every value unrendered (``env_var()`` and all), so dbt resolves it exactly as it does the
    original; the user's profiles.yml is never edited. A profile whose production target
    cannot be found raises, naming the setting that avoids the copy.
    """
    try:
        profiles, profile_name, profile, target = _profile(settings)
        output = dict(profile["outputs"][target])
    except (OSError, KeyError, TypeError, yaml.YAMLError, jinja2.TemplateError) as error:
        raise ConfigurationError(
            f"Slim CI could not read the production target of {settings.dbt_profiles_dir}/"
            f"profiles.yml ({type(error).__name__}: {error}); add a CI target to the profile "
            "and name it in DBT_CI_TARGET."
        ) from error
    output["schema"] = CI_SCHEMA
    profile = {**profile, "outputs": {**profile["outputs"], CI_TARGET_NAME: output}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profiles.yml").write_text(
        yaml.safe_dump({**profiles, profile_name: profile}, sort_keys=False)
    )
    return CI_TARGET_NAME
