"""A typed, validated model of dbt's ``run_results.json``.

Recovery reads this file when Dagster's event log cannot say what happened: only the artifacts
tell a model cut off by ``--fail-fast`` from one skipped because an upstream failed, and only
they exist for dbt runs that happened outside Dagster. The file usually comes from an artifact
store (a local folder or S3), so it can be truncated by an interrupted upload, replaced by
another artifact, or written by another dbt version. We check the few fields recovery relies on
and fail with a message that names the file and says what to do, instead of letting a
``KeyError`` surface in a sensor tick.

Pure: no I/O. Callers read the bytes and pass ``source`` (a path or URI) for the messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from orchestration.errors import RunResultsError

RUN_RESULTS_SCHEMA_V6 = "https://schemas.getdbt.com/dbt/run-results/v6.json"
"""What dbt 1.11 writes; older ``run-results`` versions (v4, v5) parse too."""

MATERIALIZING_RESOURCE_TYPES = frozenset({"model", "seed", "snapshot"})
"""dbt node types that become Dagster assets (tests become asset checks)."""

MODEL_OK_STATUSES = frozenset({"success", "no-op"})
"""Statuses after which a materializing node's relation is up to date."""

MODEL_ERROR_STATUSES = frozenset({"error", "partial success", "runtime error"})
"""A model, seed or snapshot that did not build (``partial success``: some microbatches)."""

TEST_FAILED_STATUSES = frozenset({"fail", "error", "runtime error"})
"""A test that failed or could not run (``warn`` never blocks)."""

NODE_FAILED_STATUSES = MODEL_ERROR_STATUSES | TEST_FAILED_STATUSES
"""Any node that failed in its own right (not skipped because of another)."""

WHAT_TO_DO = "Re-run the job without artifacts, or point at another run's artifacts."


@dataclass(frozen=True)
class NodeResult:
    """One entry of ``results``: what dbt did with one node."""

    unique_id: str
    resource_type: str
    """From the ``unique_id`` prefix: model, test, seed, snapshot, unit_test, operation, …"""
    status: str
    """Models: success|error|skipped; tests: pass|fail|warn|error|skipped."""
    message: str | None = None
    execution_time_s: float = 0.0
    failures: int | None = None
    batches_succeeded: tuple[tuple[str, str], ...] = ()
    """Microbatch models: ``batch_results.successful``, (event_time_start, event_time_end)."""
    batches_failed: tuple[tuple[str, str], ...] = ()
    """Microbatch models: ``batch_results.failed`` (errored, and skipped after the first
    batch failed)."""

    @property
    def cut_off_by_fail_fast(self) -> bool:
        """True for nodes dbt skipped because ``--fail-fast`` stopped the run.

        dbt 1.11 writes status ``skipped`` with ``Skipping due to fail_fast`` for every node it had
        not finished, including one that had started and was cancelled. A node skipped because an
        upstream failed has the same status, so the message is the only way to tell them apart.
        """
        if self.status != "skipped" or not self.message:
            return False
        normalised = self.message.lower().replace("-", "_").replace(" ", "_")
        return "fail_fast" in normalised

    def to_dict(self) -> dict[str, object]:
        """The subset of dbt's result entry we keep, under dbt's own field names."""
        return {
            "unique_id": self.unique_id,
            "status": self.status,
            "message": self.message,
            "execution_time": self.execution_time_s,
            "failures": self.failures,
            **(
                {
                    "batch_results": {
                        "successful": [list(b) for b in self.batches_succeeded],
                        "failed": [list(b) for b in self.batches_failed],
                    }
                }
                if self.batches_succeeded or self.batches_failed
                else {}
            ),
        }


@dataclass(frozen=True)
class RunResults:
    """The parts of one dbt invocation's ``run_results.json`` that recovery needs."""

    invocation_id: str
    dbt_version: str
    generated_at: str
    command: str | None
    """``args.which``: build, run, test, seed, snapshot, retry, …"""
    args: Mapping[str, object]
    elapsed_time_s: float
    results: tuple[NodeResult, ...]
    schema_version: str = RUN_RESULTS_SCHEMA_V6

    @cached_property
    def by_unique_id(self) -> Mapping[str, NodeResult]:
        """Results keyed by unique_id; a later entry for the same node wins."""
        return {result.unique_id: result for result in self.results}

    @property
    def fail_fast(self) -> bool:
        """Whether the invocation ran with ``--fail-fast`` (as dbt recorded its flags)."""
        return bool(self.args.get("fail_fast"))

    def to_dict(self) -> dict[str, object]:
        """A dict in ``run_results.json``'s own shape, so ``from_dict`` reads it back."""
        return {
            "metadata": {
                "dbt_schema_version": self.schema_version,
                "dbt_version": self.dbt_version,
                "generated_at": self.generated_at,
                "invocation_id": self.invocation_id,
            },
            "results": [result.to_dict() for result in self.results],
            "elapsed_time": self.elapsed_time_s,
            "args": dict(self.args),
        }

    @classmethod
    def from_dict(cls, data: object, *, source: str = "run_results") -> RunResults:
        """Validate an already-decoded run_results document (see ``parse_run_results``)."""
        return _from_document(data, source=source)


def parse_run_results(data: bytes | str, *, source: str) -> RunResults:
    """Parse and validate a ``run_results.json``.

    ``source`` is the path or URI the bytes came from; every error names it.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")  # tolerate a BOM from Windows tools
        except UnicodeDecodeError as exc:
            raise _error(source, f"is not UTF-8 text ({exc})") from exc
    if not data.strip():
        raise _error(source, "is empty (the upload or the dbt invocation was probably cut short)")
    try:
        document = json.loads(data)
    except json.JSONDecodeError as exc:
        raise _error(source, f"is truncated or not valid JSON ({exc})") from exc
    return _from_document(document, source=source)


def merge_run_results(parts: Sequence[RunResults]) -> RunResults:
    """Merge the run_results of several dbt invocations made by one run, in order.

    A run can invoke dbt more than once (a recovery-aware op retries in-process); the latest
    result for a node is what holds at the end of the run, so later parts win per unique_id.
    """
    if not parts:
        raise ValueError("merge_run_results needs at least one RunResults")
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, NodeResult] = {}
    for part in parts:
        for result in part.results:
            earlier = merged.pop(result.unique_id, None)
            merged[result.unique_id] = merge_batches(earlier, result) if earlier else result
    last = parts[-1]
    return RunResults(
        invocation_id=last.invocation_id,
        dbt_version=last.dbt_version,
        generated_at=last.generated_at,
        command=last.command,
        args=last.args,
        elapsed_time_s=sum(part.elapsed_time_s for part in parts),
        results=tuple(merged.values()),
        schema_version=last.schema_version,
    )


def merge_batches(earlier: NodeResult, later: NodeResult) -> NodeResult:
    """A microbatch model run in several invocations of one run (one per event-time window):
    each batch's latest outcome holds, and the status follows from all of them as dbt derives
    it (``success`` / ``partial success`` / ``error``). Other nodes: the later result wins."""
    if not (earlier.batches_succeeded or earlier.batches_failed):
        return later
    if not (later.batches_succeeded or later.batches_failed):
        return later
    outcome = {batch: True for batch in earlier.batches_succeeded}
    outcome.update({batch: False for batch in earlier.batches_failed})
    outcome.update({batch: True for batch in later.batches_succeeded})
    outcome.update({batch: False for batch in later.batches_failed})
    succeeded = tuple(sorted(batch for batch, ok in outcome.items() if ok))
    failed = tuple(sorted(batch for batch, ok in outcome.items() if not ok))
    status = "success" if not failed else "partial success" if succeeded else "error"
    message = later.message if status == later.status else status.upper()
    return replace(
        later,
        status=status,
        message=message,
        execution_time_s=earlier.execution_time_s + later.execution_time_s,
        batches_succeeded=succeeded,
        batches_failed=failed,
    )


def resource_type_of(unique_id: str) -> str:
    """dbt encodes the resource type as the first dot-separated part of every unique_id."""
    return unique_id.split(".", 1)[0]


def _error(source: str, problem: str) -> RunResultsError:
    return RunResultsError(f"{source} {problem}. {WHAT_TO_DO}")


def _describe_foreign(document: Mapping[str, object]) -> str:
    """Say what a JSON object that is not run_results looks like, to catch mixed-up files."""
    metadata = document.get("metadata")
    version = metadata.get("dbt_schema_version") if isinstance(metadata, Mapping) else None
    if isinstance(version, str) and version:
        kind = version.rstrip("/").rsplit("/", 2)[-2] if "/" in version else version
        return f"is a dbt {kind} artifact ({version}), not run_results"
    if "nodes" in document and "sources" in document:
        return "looks like a dbt manifest (it has nodes and sources), not run_results"
    keys = ", ".join(sorted(str(key) for key in document)[:8]) or "none"
    return f"is not a dbt run_results file (no metadata.dbt_schema_version; top-level keys: {keys})"


def _from_document(document: object, *, source: str) -> RunResults:
    if not isinstance(document, Mapping):
        kind = type(document).__name__
        raise _error(source, f"is not a dbt run_results file (top level is a JSON {kind})")
    metadata = document.get("metadata")
    version = metadata.get("dbt_schema_version") if isinstance(metadata, Mapping) else None
    is_run_results = isinstance(version, str) and "run-results" in version
    if not (isinstance(metadata, Mapping) and is_run_results):
        raise _error(source, _describe_foreign(document))
    raw_results = document.get("results")
    if not isinstance(raw_results, list):
        raise _error(source, "has no 'results' list (the file is incomplete)")
    args = document.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise _error(source, "has an 'args' that is not an object")
    which = args.get("which")
    return RunResults(
        invocation_id=_text(metadata.get("invocation_id")),
        dbt_version=_text(metadata.get("dbt_version")),
        generated_at=_text(metadata.get("generated_at")),
        command=which if isinstance(which, str) else None,
        args=dict(args),
        elapsed_time_s=_number(document.get("elapsed_time")),
        results=tuple(_results(raw_results, source=source)),
        schema_version=version,
    )


def _results(raw_results: Iterable[object], *, source: str) -> Iterable[NodeResult]:
    for position, raw in enumerate(raw_results):
        if not isinstance(raw, Mapping):
            raise _error(source, f"has results[{position}] that is not an object")
        unique_id = _required_text(raw, "unique_id", position=position, source=source)
        status = _required_text(raw, "status", position=position, source=source)
        message = raw.get("message")
        failures = raw.get("failures")
        if isinstance(failures, bool) or not isinstance(failures, int):
            failures = None
        batch_results = raw.get("batch_results")
        if not isinstance(batch_results, Mapping):
            batch_results = {}
        yield NodeResult(
            unique_id=unique_id,
            resource_type=resource_type_of(unique_id),
            status=status,
            message=message if isinstance(message, str) else None,
            execution_time_s=_number(raw.get("execution_time")),
            failures=failures,
            batches_succeeded=_batches(batch_results.get("successful")),
            batches_failed=_batches(batch_results.get("failed")),
        )


def _batches(value: object) -> tuple[tuple[str, str], ...]:
    """``[[start, end], …]`` as tuples; anything malformed is left out (no batch recovery for
    it: the model is then rebuilt whole, never narrowed on a guess)."""
    if not isinstance(value, list):
        return ()
    return tuple(
        (item[0], item[1])
        for item in value
        if isinstance(item, list | tuple)
        and len(item) == 2
        and all(isinstance(part, str) and part for part in item)
    )


def _required_text(raw: Mapping[str, object], name: str, *, position: int, source: str) -> str:
    value = raw.get(name)
    if not (isinstance(value, str) and value):
        raise _error(source, f"has results[{position}] without a '{name}' (the file is incomplete)")
    return value


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


__all__ = [
    "MATERIALIZING_RESOURCE_TYPES",
    "MODEL_OK_STATUSES",
    "RUN_RESULTS_SCHEMA_V6",
    "NodeResult",
    "RunResults",
    "merge_run_results",
    "parse_run_results",
    "resource_type_of",
]
