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


def resolve_warehouse(settings: Settings) -> Warehouse | None:
    """The resolved target of the project's profile; ``None`` if it cannot be read."""
    try:
        project = yaml.safe_load((settings.dbt_project_dir / "dbt_project.yml").read_text())
        profile_name = str(project["profile"])
        profiles = yaml.safe_load((settings.dbt_profiles_dir / "profiles.yml").read_text())
        profile = profiles[profile_name]
        jinja = _renderer({**os.environ, **settings.dbt_env()})
        target = settings.dbt_target or str(_render(profile.get("target", "default"), jinja))
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
