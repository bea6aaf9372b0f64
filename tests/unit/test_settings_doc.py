"""The README's configuration table and the settings code describe the same variables."""

from __future__ import annotations

import re

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
