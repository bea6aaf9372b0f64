"""``retry_from_artifacts`` reads only keys inside the artifact store and locations under the
operator's ``ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS``; every other location is refused with the
same message, whether or not it exists, and before anything is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.artifacts.locations import (
    REFUSAL,
    AllowedLocation,
    LocationRefusedError,
    resolve_location,
)
from orchestration.artifacts.store import LocalArtifactStore
from orchestration.dbt.selection import read_location
from orchestration.errors import ConfigurationError

SECRET = "SECRET-CONTENT-5f0c"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A local store, an allowed extra folder, its look-alike sibling and a secret outside."""
    store = tmp_path / "store"
    (store / "external" / "nightly").mkdir(parents=True)
    (store / "external" / "nightly" / "run_results.json").write_text("{}")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "run_results.json").write_text("{}")
    sibling = tmp_path / "allowed-evil"
    sibling.mkdir()
    (sibling / "run_results.json").write_text(SECRET)
    secret = tmp_path / "secret.json"
    secret.write_text(SECRET)
    (store / "external" / "evil").symlink_to(tmp_path)  # a folder symlink out of the store
    (store / "external" / "leak.json").symlink_to(secret)  # a file symlink out of the store
    (allowed / "leak.json").symlink_to(secret)  # out of an allowed folder
    return {"store": store, "allowed": allowed, "sibling": sibling, "secret": secret}


def resolve(location: str, layout: dict[str, Path], extra: tuple[str, ...] = ()) -> object:
    return resolve_location(location, store_uri=str(layout["store"]), extra_locations=extra)


def refused_locations(layout: dict[str, Path]) -> list[str]:
    secret, sibling = layout["secret"], layout["sibling"]
    return [
        "/etc/passwd",
        "/etc/no-such-file.json",
        "file:///etc/shadow",
        f"file://{secret}",
        str(secret),
        str(secret.with_name("missing.json")),
        "../../etc/passwd",
        "../secret.json",
        "external/../../secret.json",
        "external/evil/secret.json",
        "external/leak.json",
        f"{layout['store']}/external/leak.json",  # absolute, through the symlink
        f"{layout['store']}/../secret.json",
        f"{layout['allowed']}/../secret.json",
        f"{layout['allowed']}/leak.json",
        str(sibling),  # shares the text prefix of an allowed folder, not its path
        "s3://another-bucket/run_results.json",
        "http://169.254.169.254/latest/meta-data",
        "file://otherhost/etc/passwd",
        "~/secret.json",
    ]


def test_every_location_outside_the_store_and_the_allowed_prefixes_is_refused_alike(
    layout: dict[str, Path],
) -> None:
    extra = (str(layout["allowed"]),)
    messages = set()
    for location in refused_locations(layout):
        with pytest.raises(LocationRefusedError) as caught:
            resolve(location, layout, extra)
        messages.add(str(caught.value))
    assert messages == {REFUSAL}  # one message: nothing about existence or content
    assert "ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS" in REFUSAL


def test_read_location_refuses_without_reading_an_existing_or_a_missing_file(
    layout: dict[str, Path],
) -> None:
    store = LocalArtifactStore(layout["store"])
    errors = []
    for location in (str(layout["secret"]), str(layout["secret"].with_name("nope.json"))):
        with pytest.raises(ConfigurationError) as caught:
            read_location(store, location)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert SECRET not in errors[0] and str(layout["secret"]) not in errors[0]


def test_store_keys_and_paths_inside_the_store_are_allowed(layout: dict[str, Path]) -> None:
    store = layout["store"]
    expected = store / "external" / "nightly" / "run_results.json"
    by_key = resolve("external/nightly", layout)
    assert by_key == AllowedLocation(store_key="external/nightly/run_results.json", path=expected)
    assert resolve(str(store / "external" / "nightly"), layout) == AllowedLocation(path=expected)
    assert resolve(f"file://{expected}", layout) == AllowedLocation(path=expected)
    data, source = read_location(LocalArtifactStore(store), "external/nightly")
    assert (data, source) == (b"{}", str(expected))


def test_a_location_under_an_allowed_extra_prefix_is_read(layout: dict[str, Path]) -> None:
    allowed = layout["allowed"]
    store = LocalArtifactStore(layout["store"])
    for extra in (str(allowed), f"file://{allowed}/"):
        data, source = read_location(store, str(allowed), extra_locations=(extra,))
        assert (data, source) == (b"{}", str(allowed / "run_results.json"))
    with pytest.raises(LocationRefusedError):
        read_location(store, str(allowed))  # not without the setting


def test_s3_locations_inside_an_s3_store_or_an_allowed_bucket_prefix_only() -> None:
    store_uri = "s3://artifacts/dbt"
    extra = ("s3://partner/exports",)

    def s3(location: str) -> object:
        return resolve_location(location, store_uri=store_uri, extra_locations=extra)

    assert s3("s3://artifacts/dbt/external/nightly") == AllowedLocation(
        store_key="external/nightly/run_results.json"
    )
    assert s3("external/nightly") == AllowedLocation(store_key="external/nightly/run_results.json")
    assert s3("s3://partner/exports/2026-01-01") == AllowedLocation(
        s3=("partner", "exports/2026-01-01/run_results.json")
    )
    for location in (
        "s3://artifacts/dbt-other/run_results.json",  # text prefix, not a key prefix
        "s3://artifacts/other/run_results.json",
        "s3://artifacts/dbt/../other/run_results.json",
        "s3://partner/exports-evil/run_results.json",
        "s3://partner/exports/../secret.json",
        "s3://partner/exports/a\\..\\..\\secret.json",
        "s3://another-bucket/exports/run_results.json",
        "s3:///run_results.json",
        "/etc/passwd",  # no local folder is allowed with an S3 store and no extra folder
    ):
        with pytest.raises(LocationRefusedError):
            s3(location)


def test_a_relative_extra_prefix_is_a_configuration_error_naming_the_setting(
    layout: dict[str, Path],
) -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS"):
        resolve("external/nightly", layout, ("relative/folder",))
