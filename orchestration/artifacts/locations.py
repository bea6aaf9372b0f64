"""Which locations ``retry_from_artifacts`` may read, decided before anything is read.

The location comes from run config, and anyone who can reach the Launchpad can set it. Left
open, it would read any file the run worker can read and any S3 bucket its credentials reach,
and the errors of a failed read or parse would tell the caller whether the file exists and what
it holds. So a location is allowed only if it is a key inside the artifact store, or lies under
a prefix the operator listed in ``ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS``. Everything else is
refused with one fixed message that says nothing about the location.

``resolve_location`` is pure apart from ``realpath`` (injectable): local paths are resolved —
symlinks and ``..`` — before prefixes are compared, so a symlink inside the store that points
out of it, or a path that climbs out of an allowed folder, is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.artifacts.store import ArtifactStore, parse_s3_uri, s3_client, safe_key
from orchestration.errors import ArtifactNotFoundError, ArtifactStoreError, ConfigurationError

EXTRA_LOCATIONS_SETTING = "ORCHESTRATION_ARTIFACTS_EXTRA_LOCATIONS"
RUN_RESULTS = "run_results.json"

REFUSAL = (
    "retry_from_artifacts was refused and nothing was read: it may name a key in the artifact "
    "store (such as 'external/nightly') or a location under a prefix listed in "
    f"{EXTRA_LOCATIONS_SETTING}, and this location is neither. Copy the run_results.json into "
    "the artifact store, or ask the operator to add its folder or s3:// prefix to "
    f"{EXTRA_LOCATIONS_SETTING}."
)


class LocationRefusedError(ConfigurationError):
    """``retry_from_artifacts`` names a location outside what may be read."""

    def __init__(self) -> None:
        super().__init__(REFUSAL)


@dataclass(frozen=True)
class AllowedLocation:
    """A location ``resolve_location`` allowed; exactly one of the three forms is set."""

    store_key: str | None = None
    """A key of the artifact store (read through the store's own client)..."""
    path: Path | None = None
    """...or, for a local file (in a local store or an allowed folder), its resolved path."""
    s3: tuple[str, str] | None = None
    """(bucket, key) under an allowed extra s3:// prefix."""

    def describe(self, store: ArtifactStore) -> str:
        """The location for messages: the store's own name for a key, else the full path/URI."""
        if self.store_key is not None:
            return store.describe(self.store_key)
        if self.s3 is not None:
            return f"s3://{self.s3[0]}/{self.s3[1]}"
        return str(self.path)


def _with_file_name(location: str) -> str:
    """A folder means its run_results.json (as for store keys)."""
    return location if location.endswith(".json") else f"{location.rstrip('/')}/{RUN_RESULTS}"


def _under(path: str, root: str) -> bool:
    """Whether resolved ``path`` is ``root`` or inside it (by whole segments, not by text)."""
    return os.path.commonpath([path, root]) == root


def _s3_under(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix.rstrip("/") + "/")


def _plain_s3_key(key: str) -> bool:
    """No empty, '.' or '..' segment and no control character or backslash: such keys mean
    different objects to different S3 implementations, so no prefix check can be trusted."""
    segments = key.split("/")
    return all(s not in {"", ".", ".."} for s in segments) and not any(
        ord(c) < 32 or c in "\\\x7f" for c in key
    )


def _extra_prefixes(extra_locations: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The operator's extra prefixes, split into local folders and (bucket, prefix) pairs."""
    folders: list[str] = []
    buckets: list[tuple[str, str]] = []
    for entry in extra_locations:
        if entry.startswith("s3://"):
            buckets.append(parse_s3_uri(entry))
            continue
        folder = entry.removeprefix("file://")
        if not folder.startswith("/"):
            raise ConfigurationError(
                f"{EXTRA_LOCATIONS_SETTING} entry {entry!r} is neither an absolute path nor an "
                "s3:// prefix; give absolute folders or s3://bucket/prefix, comma-separated."
            )
        folders.append(folder)
    return folders, buckets


def _resolve_path(
    raw: str,
    store_uri: str,
    folders: Sequence[str],
    realpath: Callable[[str], str],
) -> AllowedLocation:
    resolved = realpath(_with_file_name(raw))
    roots = [] if store_uri.startswith("s3://") else [store_uri]
    if any(_under(resolved, realpath(root)) for root in [*roots, *folders]):
        return AllowedLocation(path=Path(resolved))
    raise LocationRefusedError()


def _resolve_s3(uri: str, store_uri: str, buckets: Sequence[tuple[str, str]]) -> AllowedLocation:
    try:
        bucket, key = parse_s3_uri(_with_file_name(uri))
    except ConfigurationError:
        raise LocationRefusedError() from None
    if not _plain_s3_key(key):
        raise LocationRefusedError()
    if store_uri.startswith("s3://"):
        store_bucket, store_prefix = parse_s3_uri(store_uri)
        if bucket == store_bucket and _s3_under(key, store_prefix):
            relative = key[len(store_prefix) :].lstrip("/") if store_prefix else key
            return _resolve_store_key(relative, store_uri, os.path.realpath)
    if any(bucket == b and _s3_under(key, prefix) for b, prefix in buckets):
        return AllowedLocation(s3=(bucket, key))
    raise LocationRefusedError()


def _resolve_store_key(
    location: str, store_uri: str, realpath: Callable[[str], str]
) -> AllowedLocation:
    try:
        key = safe_key(_with_file_name(location))
    except ArtifactStoreError:
        raise LocationRefusedError() from None
    if store_uri.startswith("s3://"):
        return AllowedLocation(store_key=key)
    root = realpath(store_uri)
    resolved = realpath(os.path.join(store_uri, key))
    if not _under(resolved, root):  # a symlink inside the store that points out of it
        raise LocationRefusedError()
    return AllowedLocation(store_key=key, path=Path(resolved))


def resolve_location(
    location: str,
    *,
    store_uri: str,
    extra_locations: Sequence[str] = (),
    realpath: Callable[[str], str] = os.path.realpath,
) -> AllowedLocation:
    """Where to read ``location`` from, or ``LocationRefusedError`` — before any read.

    ``location`` is a store key (``external/nightly``), an absolute path or ``file://`` URI,
    or an ``s3://`` URI; a folder stands for its ``run_results.json``. ``store_uri`` is the
    artifact store's (a resolved absolute folder or ``s3://bucket/prefix``).
    """
    folders, buckets = _extra_prefixes(extra_locations)
    location = location.strip()
    if location.startswith("s3://"):
        return _resolve_s3(location, store_uri, buckets)
    if location.startswith("file://"):
        location = location.removeprefix("file://")
        if not location.startswith("/"):  # file://host/… names another machine
            raise LocationRefusedError()
    if location.startswith("/"):
        return _resolve_path(location, store_uri, folders, realpath)
    if "://" in location:
        raise LocationRefusedError()  # another scheme (http://, gs://) is never read
    return _resolve_store_key(location, store_uri, realpath)


def read_allowed(store: ArtifactStore, allowed: AllowedLocation) -> bytes:
    """The bytes of an allowed location. Errors name it: the operator allowed it."""
    if allowed.path is not None:
        try:
            # O_NOFOLLOW: a symlink swapped in after resolution is not followed.
            fd = os.open(allowed.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                return handle.read()
        except FileNotFoundError as error:
            raise ArtifactNotFoundError(f"No artifact at {allowed.path}.") from error
        except OSError as error:
            raise ArtifactStoreError(f"Could not read {allowed.path}: {error}") from error
    if allowed.s3 is not None:
        return _read_s3(s3_client(), *allowed.s3)
    assert allowed.store_key is not None
    return store.get_bytes(allowed.store_key)


def _read_s3(client: Any, bucket: str, key: str) -> bytes:
    uri = f"s3://{bucket}/{key}"
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as error:  # botocore raises many unrelated types
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code in {"NoSuchKey", "404", "NotFound"}:
            raise ArtifactNotFoundError(f"No artifact at {uri}.") from error
        raise ArtifactStoreError(f"Could not read {uri}: {error}") from error
