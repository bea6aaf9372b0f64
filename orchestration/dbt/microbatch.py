"""Re-run only the failed microbatches of a dbt microbatch model, inside the dbt op.

The planner (``orchestration.recovery.batches``) gives, per partial-success model, the event-time
windows of its failed batches. dbt bounds every microbatch model of an invocation by one
``--event-time-start`` / ``--event-time-end``, so each window is one ``dbt run`` of that model
alone, before the op's main ``dbt build`` of everything else (the model's tests and its
downstream included). Several windows of one model mean several invocations, and each yields
an Output for the model: the op keeps the last one and yields it once, after every window
succeeded, with the windows in ``orchestration/rebuilt_batches``. If a window fails, the model
is not done: nothing downstream of it runs, and the step fails with dbt's error after the rest.

Windows never run with ``--full-refresh``: the failed run already rebuilt the table (its first
batch creates it; a full refresh in which no batch succeeded is planned whole instead), and a
full refresh of one window would replace the table with that window alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import AssetExecutionContext, MetadataValue, Output
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from orchestration.dbt import argv
from orchestration.dbt.invocation import InvocationOutcome, stream_dbt
from orchestration.recovery import BatchWindow
from orchestration.recovery.batches import describe_windows
from orchestration.tags import REBUILT_BATCHES_METADATA_KEY


def tests_on(unique_id: str, manifest: Mapping[str, Any]) -> set[str]:
    """The dbt tests that read a model: they run in the main build once its windows are done."""
    return {
        uid
        for uid, node in manifest["nodes"].items()
        if node.get("resource_type") == "test"
        and unique_id in ((node.get("depends_on") or {}).get("nodes") or ())
    }


class BatchPhase:
    """The window invocations of one op execution, and what they left undone."""

    def __init__(self, windows: Mapping[str, tuple[BatchWindow, ...]]) -> None:
        self.windows = dict(windows)
        self.failed: set[str] = set()
        self.error: DagsterDbtCliRuntimeError | None = None

    def stream(self, context: AssetExecutionContext, **invocation: Any) -> Iterator[Any]:
        """Each model's windows in order; its single Output after all of them succeeded."""
        for unique_id, windows in sorted(self.windows.items()):
            context.log.info(
                f"{unique_id}: re-running only its failed microbatches: {describe_windows(windows)}"
            )
            kept: Output | None = None
            for window in windows:
                try:
                    for event in stream_dbt(
                        context,
                        command="run",
                        selection=argv.Selection((unique_id,)),
                        event_time=(window.start, window.end),
                        full_refresh=False,
                        outcome=InvocationOutcome(),
                        **invocation,
                    ):
                        if isinstance(event, Output):
                            kept = event
                        else:
                            yield event
                except DagsterDbtCliRuntimeError as error:
                    self.error = self.error or error
                    self.failed.add(unique_id)
            if unique_id in self.failed or kept is None:
                self.failed.add(unique_id)
                continue
            rebuilt = {
                "windows": [window.to_dict() for window in windows],
                "batches": sum(window.batches for window in windows),
            }
            yield kept.with_metadata(
                {**kept.metadata, REBUILT_BATCHES_METADATA_KEY: MetadataValue.json(rebuilt)}
            )
