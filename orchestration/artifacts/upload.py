"""Copy one dbt invocation's artifacts into the store, then drop its target folder.

An upload failure must never change a run's outcome: a successful dbt run stays successful
and a failed one stays failed. So nothing here raises; the caller gets an ``UploadReport``
and turns a partial one into a loud warning that names what was not stored and where the
files were kept instead.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestration.artifacts.store import (
    ArtifactStore,
    InvocationRecord,
    artifact_key,
    record_invocation,
)
from orchestration.errors import ArtifactStoreError

ARTIFACT_FILES: tuple[str, ...] = ("manifest.json", "run_results.json", "dbt.log", "sources.json")


@dataclass(frozen=True)
class UploadReport:
    """What happened to each artifact file of one invocation."""

    location: str
    stored: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (file, last error)
    absent: tuple[str, ...]  # dbt did not write it (e.g. died before run_results.json)
    kept_folder: Path | None  # target folder left in place because something was not stored

    @property
    def complete(self) -> bool:
        return not self.failed

    def warning_text(self) -> str:
        names = ", ".join(name for name, _ in self.failed)
        last = self.failed[-1][1] if self.failed else ""
        kept = f" The files were kept at {self.kept_folder}." if self.kept_folder else ""
        return (
            f"dbt artifacts NOT stored in {self.location}: {names} ({last}).{kept} "
            "The run's outcome is unaffected; recovery falls back to the event log for this "
            "invocation. Check the artifact store's endpoint and credentials."
        )


def _with_retries(
    action: Callable[[], None],
    *,
    attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None],
) -> str | None:
    """Run ``action`` up to ``attempts`` times with doubling waits; return the last error."""
    last_error: str | None = None
    for attempt in range(attempts):
        try:
            action()
            return None
        except ArtifactStoreError as error:
            last_error = str(error)
            if attempt + 1 < attempts:
                sleep(backoff_seconds * (2**attempt))
    return last_error


def store_invocation_artifacts(
    store: ArtifactStore,
    *,
    run_id: str,
    label: str,
    command: str,
    step_key: str,
    succeeded: bool,
    target_path: Path,
    files: Sequence[str] = ARTIFACT_FILES,
    attempts: int = 4,
    backoff_seconds: float = 0.5,
    remove_folder: bool = True,
    move_latest: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> UploadReport:
    """Upload the invocation's artifact files and index them under the run.

    The target folder (dagster-dbt's ``target/<op>-<run>-<uuid>/``, several MB each) is removed
    once everything present was stored, so disk use stays bounded over thousands of runs.
    ``move_latest=False`` leaves ``latest.json`` where it is (slim CI invocations).
    """

    def retried(action: Callable[[], object]) -> str | None:
        return _with_retries(
            action, attempts=attempts, backoff_seconds=backoff_seconds, sleep=sleep
        )

    stored, failed, absent = _upload_files(store, run_id, label, target_path, files, retried)
    if stored and not failed:
        record = InvocationRecord(
            label=label,
            command=command,
            step_key=step_key,
            status="success" if succeeded else "failure",
            files=tuple(stored),
            created_at=time.time(),
            missing=tuple(absent),
        )
        error = retried(lambda: record_invocation(store, run_id, record, move_latest=move_latest))
        if error is not None:
            failed.append(("index.json", error))

    kept: Path | None = target_path
    if not failed and remove_folder:
        shutil.rmtree(target_path, ignore_errors=True)
        kept = None
    elif not failed:
        kept = None
    return UploadReport(
        location=store.describe(f"runs/{run_id}/{label}"),
        stored=tuple(stored),
        failed=tuple(failed),
        absent=tuple(absent),
        kept_folder=kept,
    )


def _upload_files(
    store: ArtifactStore,
    run_id: str,
    label: str,
    target_path: Path,
    files: Sequence[str],
    retried: Callable[[Callable[[], object]], str | None],
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(stored, failed with why, absent) file names; stops at the first file that cannot be
    stored: the endpoint is down, and further files would only repeat the same wait."""
    stored: list[str] = []
    failed: list[tuple[str, str]] = []
    absent: list[str] = []
    for position, name in enumerate(files):
        path = target_path / name
        if not path.is_file():
            absent.append(name)
            continue
        data = path.read_bytes()
        key = artifact_key(run_id, label, name)
        error = retried(lambda key=key, data=data: store.put_bytes(key, data))
        if error is None:
            stored.append(name)
            continue
        failed.append((name, error))
        failed.extend(
            (other, "skipped after an earlier upload failed")
            for other in files[position + 1 :]
            if other not in stored and (target_path / other).is_file()
        )
        break
    return stored, failed, absent
