"""The dbt project on disk: where it is, and a manifest that matches it.

Definitions are built from ``target/manifest.json``. A missing or stale manifest is the most
common "why don't I see my model" surprise, so loading checks the project's files against the
manifest's age and re-parses (``dbt parse``) when they are newer, instead of showing last
week's graph.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestration.errors import ConfigurationError
from orchestration.settings import Settings

PROJECT_SOURCE_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
PROJECT_SOURCE_FILES = ("dbt_project.yml", "profiles.yml", "selectors.yml")


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter, else the one on PATH.

    The webserver and daemon may be started by absolute path without the venv's ``bin/`` on
    PATH (DESIGN.md); looking beside ``sys.executable`` first makes that work.
    """
    beside = Path(sys.executable).parent / "dbt"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dbt")
    if not found:
        raise ConfigurationError(
            "The dbt executable was not found next to Python or on PATH; install dbt-core "
            "and an adapter in this environment (`make run` does it)."
        )
    return found


def manifest_path(settings: Settings) -> Path:
    return settings.dbt_project_dir / "target" / "manifest.json"


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for name in PROJECT_SOURCE_FILES:
        path = project_dir / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
    for folder in PROJECT_SOURCE_DIRS:
        root = project_dir / folder
        if not root.is_dir():
            continue
        for dirpath, _, filenames in os.walk(root):
            for filename in filenames:
                newest = max(newest, os.stat(os.path.join(dirpath, filename)).st_mtime)
    return newest


def manifest_is_stale(settings: Settings) -> bool:
    path = manifest_path(settings)
    if not path.is_file():
        return True
    return _newest_source_mtime(settings.dbt_project_dir) > path.stat().st_mtime


def prepare_manifest(settings: Settings, *, force: bool = False) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than the project's files."""
    path = manifest_path(settings)
    if not force and not manifest_is_stale(settings):
        return path
    env = {**os.environ, **settings.dbt_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    args = [
        dbt_executable(),
        "parse",
        "--project-dir",
        str(settings.dbt_project_dir),
        "--profiles-dir",
        str(settings.dbt_profiles_dir),
        "--target-path",
        str(path.parent),
    ]
    if settings.dbt_target:
        args += ["--target", settings.dbt_target]
    started = time.monotonic()
    completed = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        raise ConfigurationError(
            f"`dbt parse` failed for {settings.dbt_project_dir} (exit {completed.returncode}); "
            f"fix the project and reload.\n{tail}"
        )
    print(
        f"Parsed dbt project {settings.dbt_project_dir} in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return path


@functools.cache
def _load_manifest_cached(path: str, mtime: float) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return json.load(handle)


def load_manifest(settings: Settings) -> dict[str, Any]:
    """The parsed manifest, prepared if needed; cached per file version."""
    path = prepare_manifest(settings)
    return _load_manifest_cached(str(path), path.stat().st_mtime)
