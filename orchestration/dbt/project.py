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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from orchestration.dbt.fork_server import CLIENT_NAME, FORK_SERVER_ENV
from orchestration.errors import ConfigurationError
from orchestration.settings import Settings

PROJECT_SOURCE_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
PROJECT_SOURCE_FILES = (
    "dbt_project.yml",
    "profiles.yml",
    "selectors.yml",
    "packages.yml",
    "dependencies.yml",
)


def dbt_executable() -> str:
    """The ``dbt`` a run starts: in a warm run, the client of the warm worker's dbt fork
    server (``orchestration.dbt.fork_server``: dbt already imported); else ``real_dbt()``."""
    folder = os.environ.get(FORK_SERVER_ENV)
    if folder and (client := Path(folder) / CLIENT_NAME).is_file():
        return str(client)
    return real_dbt()


def real_dbt() -> str:
    """The ``dbt`` next to this interpreter, else the one on PATH.

    The webserver and daemon may be started by absolute path without the venv's ``bin/`` on
    PATH; looking beside ``sys.executable`` first makes that work.
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


def project_source_files(project_dir: Path) -> Iterator[Path]:
    """The files a ``dbt parse`` reads: when one is newer than the manifest, it is stale."""
    for name in PROJECT_SOURCE_FILES:
        path = project_dir / name
        if path.is_file():
            yield path
    for folder in PROJECT_SOURCE_DIRS:
        root = project_dir / folder
        if not root.is_dir():
            continue
        for dirpath, _, filenames in os.walk(root):
            for filename in filenames:
                yield Path(dirpath, filename)


def _newest_source_mtime(project_dir: Path) -> float:
    return max((path.stat().st_mtime for path in project_source_files(project_dir)), default=0.0)


def manifest_is_stale(settings: Settings) -> bool:
    path = manifest_path(settings)
    if not path.is_file():
        return True
    return _newest_source_mtime(settings.dbt_project_dir) > path.stat().st_mtime


def declared_packages(project_dir: Path) -> list[str]:
    """Names of the packages ``packages.yml`` (or ``dependencies.yml``) declares."""
    names: list[str] = []
    for file_name in ("packages.yml", "dependencies.yml"):
        path = project_dir / file_name
        if not path.is_file():
            continue
        document = yaml.safe_load(path.read_text()) or {}
        for entry in document.get("packages") or ():
            if isinstance(entry, dict):
                name = entry.get("package") or entry.get("git") or entry.get("local") or "?"
                names.append(str(name))
    return names


def packages_install_dir(project_dir: Path) -> Path:
    config = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    return project_dir / str(config.get("packages-install-path") or "dbt_packages")


def packages_missing(project_dir: Path) -> bool:
    """Fewer installed packages than declared: what makes dbt refuse to parse."""
    declared = declared_packages(project_dir)
    if not declared:
        return False
    folder = packages_install_dir(project_dir)
    installed = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return len(installed) < len(declared)


def dbt_subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of every dbt process we start: ours plus what the project needs."""
    return {
        **os.environ,
        **settings.dbt_env(),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **extra,
    }


def dbt_command_args(settings: Settings, *command: str) -> list[str]:
    """``dbt <command…>`` for this project, profiles folder and target (helper commands:
    parse, deps, source freshness; builds go through ``orchestration.dbt.invocation``)."""
    args = [dbt_executable(), *command, "--project-dir", str(settings.dbt_project_dir)]
    args += ["--profiles-dir", str(settings.dbt_profiles_dir)]
    if settings.dbt_target:
        args += ["--target", settings.dbt_target]
    return args


def _run_dbt(settings: Settings, command: str, *extra: str) -> subprocess.CompletedProcess:
    """One helper dbt command (parse, deps) with the project's flags and a timeout."""
    args = [*dbt_command_args(settings, command), *extra]
    timeout = settings.dbt_command_timeout_seconds
    try:
        return subprocess.run(
            args,
            env=dbt_subprocess_env(settings),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ConfigurationError(
            f"`dbt {command}` for {settings.dbt_project_dir} did not finish within {timeout:.0f}s "
            "(ORCHESTRATION_DBT_COMMAND_TIMEOUT_SECONDS); raise the limit or find what it waits "
            "for (a locked warehouse file, an unreachable host)."
        ) from None


def _tail(completed: subprocess.CompletedProcess, lines: int = 15) -> str:
    return "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-lines:])


def install_packages(settings: Settings) -> None:
    """``dbt deps`` for a project whose packages are declared but not installed."""
    project_dir = settings.dbt_project_dir
    packages = ", ".join(declared_packages(project_dir))
    started = time.monotonic()
    completed = _run_dbt(settings, "deps")
    if completed.returncode == 0:
        print(
            f"Installed dbt packages ({packages}) in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        return
    output = completed.stdout + completed.stderr
    folder = packages_install_dir(project_dir)
    if any(marker in output for marker in _OFFLINE_MARKERS):
        raise ConfigurationError(
            f"`dbt deps` could not reach a package hub to install {packages} for "
            f"{project_dir}: this machine looks offline. Vendor the packages: run `dbt deps` "
            f"where the hub is reachable and ship the resulting {folder.name}/ folder with the "
            f"project (copy it to {folder})."
        )
    raise ConfigurationError(
        f"`dbt deps` failed for {project_dir} (exit {completed.returncode}) installing "
        f"{packages}; fix packages.yml or vendor {folder.name}/.\n{_tail(completed)}"
    )


_OFFLINE_MARKERS = (
    "External connection exception",
    "Failed to resolve",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "Max retries exceeded",
)


def prepare_manifest(settings: Settings, *, force: bool = False) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than the project's files,
    after ``dbt deps`` when the project's packages are not installed."""
    path = manifest_path(settings)
    missing = packages_missing(settings.dbt_project_dir)
    if not force and not missing and not manifest_is_stale(settings):
        return path
    if missing:
        install_packages(settings)
    started = time.monotonic()
    completed = _run_dbt(settings, "parse", "--target-path", str(path.parent))
    if completed.returncode != 0:
        raise ConfigurationError(
            f"`dbt parse` failed for {settings.dbt_project_dir} (exit {completed.returncode}); "
            f"fix the project and reload.\n{_tail(completed)}"
        )
    print(
        f"Parsed dbt project {settings.dbt_project_dir} in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return path


def parse_into(settings: Settings, target_path: Path) -> dict[str, Any]:
    """``dbt parse`` with ``settings``' profile and target into ``target_path``; its manifest.

    For a target other than the one Definitions were built from (slim CI checks where its
    target would write before it builds)."""
    completed = _run_dbt(settings, "parse", "--target-path", str(target_path))
    if completed.returncode != 0:
        raise ConfigurationError(
            f"`dbt parse` for target {settings.dbt_target} of {settings.dbt_project_dir} failed "
            f"(exit {completed.returncode}); fix the target in profiles.yml.\n{_tail(completed)}"
        )
    return json.loads((target_path / "manifest.json").read_text())


@functools.cache
def _load_manifest_cached(path: str, mtime: float) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return json.load(handle)


def load_manifest(settings: Settings) -> dict[str, Any]:
    """The parsed manifest, prepared if needed; cached per file version."""
    path = prepare_manifest(settings)
    return _load_manifest_cached(str(path), path.stat().st_mtime)
