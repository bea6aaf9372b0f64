"""Where dbt artifacts live: a local folder or an S3 prefix, behind one small interface.

Layout (keys are relative to the store's root)::

    runs/<run_id>/index.json                      the run's invocations, newest last
    runs/<run_id>/<invocation>/manifest.json      one folder per dbt invocation
    runs/<run_id>/<invocation>/run_results.json
    runs/<run_id>/<invocation>/dbt.log
    runs/<run_id>/<invocation>/sources.json       (source freshness only)
    latest.json                                   pointer to the newest invocation (not slim CI)
    latest_production.json                        the latest production run whose dbt step
                                                  succeeded (slim CI defers to its manifest)

``latest.json``, ``latest_production.json`` and each ``index.json`` are shared by concurrent
writers and only ever changed through ``update_bytes`` (a lock locally, conditional writes on
S3). Slim CI invocations are stored under their run like any other, but move neither pointer.

The index files exist so that "the artifacts of run X" and "the latest artifacts" are one GET
each: listing a bucket with thousands of runs is slow and costs money.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestration.errors import ArtifactNotFoundError, ArtifactStoreError, ConfigurationError

# A key segment may hold letters, digits, '.', '_' and '-' only, and not be '.' or '..':
# run ids and labels come from users (run config, CLI), and must never escape the prefix.
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")

INDEX_FILE = "index.json"
LATEST_KEY = "latest.json"
PRODUCTION_STATE_KEY = "latest_production.json"


def safe_key(*segments: str) -> str:
    """Join key segments, refusing anything that could leave the store's prefix."""
    parts: list[str] = []
    for segment in segments:
        for part in str(segment).split("/"):
            if not part:
                continue
            if part in {".", ".."} or not _SEGMENT.match(part):
                raise ArtifactStoreError(
                    f"Refusing artifact key segment {part!r}: only letters, digits, '.', '_' "
                    "and '-' are allowed, so keys cannot leave the store's prefix."
                )
            parts.append(part)
    if not parts:
        raise ArtifactStoreError("An artifact key needs at least one segment.")
    return "/".join(parts)


def run_prefix(run_id: str) -> str:
    return safe_key("runs", run_id)


@dataclass(frozen=True)
class InvocationRecord:
    """One dbt invocation's entry in its run's index."""

    label: str
    command: str
    step_key: str
    status: str  # "success" | "failure"
    files: tuple[str, ...]
    created_at: float
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["missing"] = list(self.missing)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InvocationRecord:
        return cls(
            label=data["label"],
            command=data.get("command", ""),
            step_key=data.get("step_key", ""),
            status=data.get("status", "unknown"),
            files=tuple(data.get("files", ())),
            created_at=float(data.get("created_at", 0.0)),
            missing=tuple(data.get("missing", ())),
        )


@dataclass(frozen=True)
class RunIndex:
    run_id: str
    invocations: tuple[InvocationRecord, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(
            {"run_id": self.run_id, "invocations": [i.to_dict() for i in self.invocations]},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str) -> RunIndex:
        try:
            data = json.loads(text)
            return cls(
                run_id=data["run_id"],
                invocations=tuple(InvocationRecord.from_dict(i) for i in data["invocations"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ArtifactStoreError(
                f"The run index {source} is unreadable ({error}); delete it and its run's "
                "artifacts will be re-indexed on the next invocation of that run."
            ) from error


Update = Callable[[bytes | None], bytes | None]
"""Current content (None when absent) → the new content, or None to leave it as it is.

Runs in parallel share ``latest.json`` and, with several steps, their run's ``index.json``:
a plain read-then-write would let one writer's update silently replace another's. The update
may be called more than once (S3 retries after a concurrent change) and must not have effects.
"""

CONFLICT_ATTEMPTS = 20
"""S3 conditional-write attempts before giving up on a key that keeps changing under us."""


class ArtifactStore(Protocol):
    """Bytes in, bytes out, under keys relative to the store's root."""

    uri: str

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def update_bytes(self, key: str, update: Update) -> None:
        """Read-modify-write ``key`` atomically against concurrent writers (see ``Update``)."""
        ...

    def describe(self, key: str) -> str:
        """Full location of ``key`` for messages (a path or an s3:// URI)."""
        ...


class LocalArtifactStore:
    """A folder on disk. Writes go to a temporary file first so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def _path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _replace_atomically(path, data)
        except OSError as error:
            raise ArtifactStoreError(f"Could not write {path}: {error}") from error

    def update_bytes(self, key: str, update: Update) -> None:
        """Under an exclusive ``flock`` on a sidecar ``.<name>.lock`` file, which every process
        updating ``key`` on this machine (or on an NFSv4 share) takes first."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_name(f".{path.name}.lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
                current = path.read_bytes() if path.is_file() else None
                new = update(current)
                if new is not None:
                    _replace_atomically(path, new)
        except OSError as error:
            raise ArtifactStoreError(f"Could not update {path}: {error}") from error

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as error:
            raise ArtifactNotFoundError(f"No artifact at {path}.") from error
        except OSError as error:
            raise ArtifactStoreError(f"Could not read {path}: {error}") from error

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def describe(self, key: str) -> str:
        return str(self._path(key))


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file named for this writer alone, then rename it over ``path``:
    readers never see half a file and concurrent writers never share a temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class S3ArtifactStore:
    """An S3 prefix, through a boto3 client (dagster-aws's ``S3Resource.get_client()``)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as error:  # botocore raises many unrelated types
            raise ArtifactStoreError(f"Could not write {self.describe(key)}: {error}") from error

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise ArtifactNotFoundError(f"No artifact at {self.describe(key)}.") from error
            raise ArtifactStoreError(f"Could not read {self.describe(key)}: {error}") from error

    def exists(self, key: str) -> bool:
        try:
            self.get_bytes(key)
        except ArtifactNotFoundError:
            return False
        return True

    def update_bytes(self, key: str, update: Update) -> None:
        """Compare-and-swap by conditional write: PUT with ``If-Match: <ETag read>`` (or
        ``If-None-Match: *`` when absent), re-read and retry when another writer won."""
        for attempt in range(CONFLICT_ATTEMPTS):
            current, etag = self._get_with_etag(key)
            new = update(current)
            if new is None:
                return
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=new, **condition
                )
                return
            except Exception as error:
                if _error_code(error) not in _CONFLICT_CODES:
                    raise ArtifactStoreError(
                        f"Could not write {self.describe(key)}: {error}"
                    ) from error
            time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))
        raise ArtifactStoreError(
            f"Could not update {self.describe(key)}: other writers changed it first "
            f"{CONFLICT_ATTEMPTS} times in a row. The upload is retried; if this persists, "
            "check that the endpoint supports conditional writes (If-Match)."
        )

    def _get_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response.get("ETag")
        except Exception as error:
            if _error_code(error) in {"NoSuchKey", "404", "NotFound"}:
                return None, None
            raise ArtifactStoreError(f"Could not read {self.describe(key)}: {error}") from error

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _error_code(error: Exception) -> str | None:
    return getattr(error, "response", {}).get("Error", {}).get("Code")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``."""
    if not uri.startswith("s3://"):
        raise ConfigurationError(f"{uri!r} is not an s3:// URI.")
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigurationError(f"{uri!r} names no bucket; use s3://bucket[/prefix].")
    return bucket, prefix.strip("/")


def s3_client(*, max_attempts: int = 2, connect_timeout_seconds: float = 5.0) -> Any:
    """A boto3 S3 client built by dagster-aws; the endpoint comes from ``AWS_ENDPOINT_URL``.

    botocore's own retries are kept low: our uploader retries with its own backoff and must
    be able to give up in seconds when the endpoint is down, not after minutes.
    """
    import botocore.config
    from dagster_aws.s3 import S3Resource

    client = S3Resource(max_attempts=max_attempts).get_client()
    # S3Resource does not expose timeouts; rebuild the client with the same endpoint/region.
    config = botocore.config.Config(
        connect_timeout=connect_timeout_seconds,
        read_timeout=30,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=client.meta.endpoint_url,
        region_name=client.meta.region_name,
        config=config,
    )


def open_store(uri: str, *, client: Any | None = None) -> ArtifactStore:
    """Open the store named by ``ORCHESTRATION_ARTIFACTS_URI``: a local path or s3://."""
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        return S3ArtifactStore(client or s3_client(), bucket, prefix)
    return LocalArtifactStore(Path(uri))


def read_run_index(store: ArtifactStore, run_id: str) -> RunIndex:
    key = f"{run_prefix(run_id)}/{INDEX_FILE}"
    try:
        data = store.get_bytes(key)
    except ArtifactNotFoundError:
        return RunIndex(run_id=run_id)
    return RunIndex.from_json(data, source=store.describe(key))


def record_invocation(
    store: ArtifactStore, run_id: str, record: InvocationRecord, *, move_latest: bool = True
) -> None:
    """Append ``record`` to the run's index and move ``latest.json`` forward to it.

    ``move_latest=False`` (a slim CI invocation, which builds into a CI schema) indexes the
    artifacts under the run but leaves ``latest.json`` on production's newest invocation.

    Both are read-modify-writes of documents other runs (latest.json) or other steps of this
    run (index.json) update at the same time, so both go through ``update_bytes``. The pointer
    only moves forward: an invocation that finishes uploading after a newer one (a slow
    upload, a retry) leaves the pointer on the newer one.
    """
    index_key = f"{run_prefix(run_id)}/{INDEX_FILE}"

    def append(current: bytes | None) -> bytes:
        index = (
            RunIndex(run_id=run_id)
            if current is None
            else RunIndex.from_json(current, source=store.describe(index_key))
        )
        kept = tuple(i for i in index.invocations if i.label != record.label)
        return RunIndex(run_id=run_id, invocations=(*kept, record)).to_json().encode()

    store.update_bytes(index_key, append)
    if move_latest:
        store.update_bytes(LATEST_KEY, _forward_pointer(run_id, record.label, record.created_at))


def _forward_pointer(run_id: str, label: str | None, created_at: float) -> Update:
    """An update that points at ``run_id`` unless the stored pointer is newer: a slow upload
    or a late writer never moves a pointer backwards."""

    def move_forward(current: bytes | None) -> bytes | None:
        if current is not None and _pointer_time(current) > created_at:
            return None
        latest = {"run_id": run_id, "invocation": label, "created_at": created_at}
        return json.dumps(latest).encode()

    return move_forward


def record_production_state(store: ArtifactStore, run_id: str, *, created_at: float) -> None:
    """Move ``latest_production.json`` forward to ``run_id``, a production run whose dbt step
    succeeded: slim CI compares against and defers to that run's manifest."""
    store.update_bytes(PRODUCTION_STATE_KEY, _forward_pointer(run_id, None, created_at))


def read_production_state(store: ArtifactStore) -> str | None:
    """The run id ``latest_production.json`` points at; ``None`` when nothing is stored yet."""
    try:
        data = store.get_bytes(PRODUCTION_STATE_KEY)
    except ArtifactNotFoundError:
        return None
    try:
        return str(json.loads(data)["run_id"])
    except (ValueError, KeyError, TypeError) as error:
        raise ArtifactStoreError(
            f"{store.describe(PRODUCTION_STATE_KEY)} is unreadable ({error}); delete it (the "
            "next successful production run writes it again) or name a production run in "
            "slim_ci's run config (production_run_id)."
        ) from error


def manifest_key(store: ArtifactStore, run_id: str) -> str | None:
    """Key of the manifest.json of ``run_id``'s newest stored invocation, if any."""
    for inv in reversed(read_run_index(store, run_id).invocations):
        if "manifest.json" in inv.files:
            return artifact_key(run_id, inv.label, "manifest.json")
    return None


def _pointer_time(data: bytes) -> float:
    """``created_at`` of a stored latest.json; an unreadable pointer counts as oldest."""
    try:
        return float(json.loads(data)["created_at"])
    except (ValueError, KeyError, TypeError):
        return float("-inf")


def artifact_key(run_id: str, label: str, name: str) -> str:
    return safe_key("runs", run_id, label, name)


def find_run_results_keys(store: ArtifactStore, run_id: str) -> list[str]:
    """Keys of every stored run_results.json of ``run_id``'s dbt builds, oldest first."""
    index = read_run_index(store, run_id)
    return [
        artifact_key(run_id, inv.label, "run_results.json")
        for inv in index.invocations
        if "run_results.json" in inv.files and inv.command in {"build", "run", "test", "retry"}
    ]
