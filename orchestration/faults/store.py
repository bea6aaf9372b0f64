"""Injected faults, kept in one JSON file so every process sees them.

The webserver, the daemon and each run worker are separate processes; a JSON file (default
``data/faults.json``) under an ``flock`` is the smallest thing they all share. The dbt op reads
it once per invocation and passes the active faults to dbt as ``--vars``; the dbt project's
``orchestration_fault_hook()`` pre-hook turns a listed model into a genuine database error and
``get_test_sql`` makes a listed model's error-severity tests fail. With no fault set the vars
are empty and the hooks render nothing: zero cost.

Off unless ``ORCHESTRATION_FAULTS_ENABLED=1`` (``FaultStore.from_settings``): whoever can write
the file must not be able to fail production runs, so with it off runs never open the file.

A transient fault (``--times N``) counts down once per dbt invocation in which the model
really failed because of it (read from that invocation's run_results.json), so a model that
was skipped because something upstream failed does not use up its fault.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestration.errors import FaultError

if TYPE_CHECKING:
    from orchestration.settings import Settings

FaultTarget = Literal["model", "test", "batch"]

MODEL_FAULTS_VAR = "orchestration_model_faults"
TEST_FAULTS_VAR = "orchestration_test_faults"
BATCH_FAULTS_VAR = "orchestration_batch_faults"
"""``{model: {YYYY-MM-DD: message}}``: only that day's microbatches of the model fail (the
model's SQL ends with ``{{ orchestration_batch_fault_guard() }}``)."""


class InjectedFault(RuntimeError):
    """The error a Python asset raises for an injected fault (its message is the fault's)."""


@dataclass(frozen=True)
class Fault:
    model: str
    target: FaultTarget
    remaining: int | None  # None = permanent
    message: str
    batch: str | None = None
    """``target == "batch"``: the day (YYYY-MM-DD) whose microbatches fail."""

    @property
    def transient(self) -> bool:
        return self.remaining is not None

    @property
    def key(self) -> str:
        """Where the fault lives in the file: one per model and kind, one per model and day."""
        if self.target == "batch":
            return f"batch:{self.model}@{self.batch}"
        return f"{self.target}:{self.model}"


def default_message(
    model: str, *, target: FaultTarget, transient: bool, batch: str | None = None
) -> str:
    """Messages shaped like the real errors they stand for, so error classification treats
    an injected transient fault like a dropped connection and a permanent one like a
    permission problem."""
    if target == "test":
        return f"injected data test failure on {model}"
    if target == "batch":
        if transient:
            return (
                f"connection reset by peer (injected transient fault in batch {batch} of {model})"
            )
        return f"permission denied for table {model} (injected permanent fault in batch {batch})"
    if transient:
        return f"connection reset by peer (injected transient fault in model {model})"
    return f"permission denied for table {model} (injected permanent fault)"


ENABLE_SETTING = "ORCHESTRATION_FAULTS_ENABLED"
"""Fault injection is a test and demo tool: runs ignore the faults file unless this is 1."""


class FaultStore:
    """The faults file. ``enabled=False`` (production) makes every run-side reader
    (``dbt_vars``, ``record_invocation``, ``fire_python_fault``) a no-op that never opens the
    file, so nobody who can write it can make production runs fail."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    @classmethod
    def from_settings(cls, settings: Settings) -> FaultStore:
        """The store as runs see it: off unless ``ORCHESTRATION_FAULTS_ENABLED=1``."""
        return cls(settings.faults_file, enabled=settings.faults_enabled)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read()
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    tmp = self.path.with_name(self.path.name + ".tmp")
                    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
                    tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"faults": {}}
        try:
            data = json.loads(self.path.read_text() or "{}")
        except ValueError as error:
            raise FaultError(
                f"{self.path} is not valid JSON ({error}); run "
                "`python -m orchestration faults clear` to reset it."
            ) from error
        data.setdefault("faults", {})
        return data

    def list(self) -> list[Fault]:
        if not self.path.is_file():
            return []
        return [Fault(**value) for _, value in sorted(self._read()["faults"].items())]

    def inject(
        self,
        model: str,
        *,
        times: int | None = None,
        target: FaultTarget = "model",
        message: str | None = None,
        batch: str | None = None,
    ) -> Fault:
        """Add a fault; ``batch`` (YYYY-MM-DD) makes only that day's microbatches fail."""
        if not self.enabled:
            raise FaultError(
                f"Fault injection is off, so runs would ignore this fault. It is a test and demo "
                f"tool: set {ENABLE_SETTING}=1 in the environment of this command and of the "
                "processes that run jobs (`make run`, `make dev`, `make test` and `make bench` "
                f"set it; `export {ENABLE_SETTING}=1` in a shell), then inject again."
            )
        if times is not None and times < 1:
            raise FaultError("--times must be at least 1 (omit it for a permanent fault).")
        if not model or any(c in model for c in "'\"\\\n"):
            raise FaultError(f"{model!r} is not a model name.")
        if batch is not None:
            target = "batch"
            batch = _batch_day(batch)
        transient = times is not None
        fault = Fault(
            model=model,
            target=target,
            remaining=times,
            message=message
            or default_message(model, target=target, transient=transient, batch=batch),
            batch=batch,
        )
        with self._locked() as data:
            data["faults"][fault.key] = asdict(fault)
        return fault

    def clear(self, model: str | None = None) -> int:
        with self._locked() as data:
            before = len(data["faults"])
            if model is None:
                data["faults"] = {}
            else:
                data["faults"] = {
                    key: value for key, value in data["faults"].items() if value["model"] != model
                }
            return before - len(data["faults"])

    def fire_python_fault(self, name: str) -> None:
        """For Python assets (ingestion, reports): raise the injected error for ``name``.

        Counts a transient fault down before raising, since a Python step that raised has
        certainly executed. Cheap when no fault file exists (one ``stat``).
        """
        if not self.enabled or not self.path.is_file():
            return
        message: str | None = None
        with self._locked() as data:
            value = data["faults"].get(f"model:{name}")
            if value is None:
                return
            message = value["message"]
            if value["remaining"] is not None:
                value["remaining"] -= 1
                if value["remaining"] <= 0:
                    del data["faults"][f"model:{name}"]
        raise InjectedFault(message)

    def dbt_vars(self) -> dict[str, Any]:
        """The ``--vars`` entries for the active faults; empty when none is set."""
        if not self.enabled or not self.path.is_file():
            return {}
        model_faults: dict[str, str] = {}
        test_faults: dict[str, str] = {}
        batch_faults: dict[str, dict[str, str]] = {}
        for fault in self.list():
            if fault.target == "batch" and fault.batch:
                batch_faults.setdefault(fault.model, {})[fault.batch] = fault.message
            else:
                by_target = model_faults if fault.target == "model" else test_faults
                by_target[fault.model] = fault.message
        result: dict[str, Any] = {}
        if model_faults:
            result[MODEL_FAULTS_VAR] = model_faults
        if test_faults:
            result[TEST_FAULTS_VAR] = test_faults
        if batch_faults:
            result[BATCH_FAULTS_VAR] = batch_faults
        return result

    def record_invocation(
        self,
        run_results: Mapping[str, Any] | None,
        *,
        test_models: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Count down transient faults that fired in one dbt invocation; return spent ones.

        ``test_models`` maps a test's unique_id to the name of the model it is attached to
        (from the manifest), so a test fault counts only when that model's test failed.
        """
        test_models = test_models or {}
        if not self.enabled or not run_results or not self.path.is_file():
            return []
        fired_models: set[str] = set()
        fired_tests: set[str] = set()
        fired_batches: set[str] = set()  # "model@YYYY-MM-DD"
        for result in run_results.get("results", []):
            unique_id = str(result.get("unique_id", ""))
            status = result.get("status")
            message = str(result.get("message") or "")
            if unique_id.startswith("model.") and status == "error" and "injected" in message:
                fired_models.add(unique_id.split(".")[-1])
            if unique_id.startswith("test.") and status == "fail" and unique_id in test_models:
                fired_tests.add(test_models[unique_id])
            fired_batches |= _failed_batch_days(unique_id, result)
        spent: list[str] = []
        with self._locked() as data:
            for key, value in list(data["faults"].items()):
                if value["remaining"] is None:
                    continue
                if value["target"] == "batch":
                    fired = f"{value['model']}@{value.get('batch')}" in fired_batches
                else:
                    fired = value["model"] in (
                        fired_models if value["target"] == "model" else fired_tests
                    )
                if not fired:
                    continue
                value["remaining"] -= 1
                if value["remaining"] <= 0:
                    del data["faults"][key]
                    spent.append(value["model"])
        return spent


def _batch_day(batch: str) -> str:
    """``--batch`` as an ISO day; anything else is refused with the expected shape."""
    try:
        return date.fromisoformat(batch).isoformat()
    except ValueError as error:
        raise FaultError(
            f"--batch {batch!r} is not a day; give the batch's day as YYYY-MM-DD."
        ) from error


def _failed_batch_days(unique_id: str, result: Mapping[str, Any]) -> set[str]:
    """``model@day`` for each failed microbatch of a model result (dbt's ``batch_results``)."""
    batches = (result.get("batch_results") or {}).get("failed") or ()
    name = unique_id.split(".")[-1]
    return {
        f"{name}@{str(batch[0])[:10]}"
        for batch in batches
        if unique_id.startswith("model.") and isinstance(batch, list | tuple) and batch
    }
