"""The embedded instance's ``dagster.yaml``: written once, when ``DAGSTER_HOME`` has none.

``make run``, ``make dev`` and ``python -m orchestration …`` write it when the file is missing
or empty (an empty file is what earlier versions created), and never touch a file with content:
that is the user's configuration. Production uses ``deploy/dagster.yaml`` (PostgreSQL) instead.

What it sets, and why (figures in ``benchmarks/RESULTS.md``):

- ``event_log_storage``: Dagster's SQLite event log at its usual place, through
  ``EmbeddedSqliteEventLogStorage`` — the same SQL, transactions and durability, without an
  engine built per write, and with batched writes in one transaction.
- ``run_coordinator``: Dagster's default queued coordinator, dequeuing every second instead of
  every five, so a run launched from the UI or by the retry sensor starts without waiting.
- ``run_launcher``: ``WarmRunLauncher`` (``orchestration.instance.run_launcher``), Dagster's
  default launcher except that a run starts as a fork of a process that has already loaded
  Dagster, dagster-dbt and the definitions, instead of a fresh interpreter that loads them
  again (seconds per run at 1,000 models). Replace the block with Dagster's
  ``DefaultRunLauncher`` to go back.

``DAGSTER_EVENT_BATCH_SIZE`` (which routes Dagster's batchable events through
``store_event_batch``) is an environment variable, not instance configuration; the Makefile
exports it for every process it starts.
"""

from __future__ import annotations

from pathlib import Path

HEADER = """\
# The embedded instance of this project, written by orchestration/instance/config.py because
# this folder had no dagster.yaml. Edit freely: a file with content is never rewritten.
# Production: deploy/dagster.yaml (PostgreSQL).
"""
EVENT_LOG_STORAGE = """\
event_log_storage:
  module: orchestration.instance.sqlite_event_log
  class: EmbeddedSqliteEventLogStorage
  config:
    base_dir: {runs_dir}
"""
RUN_COORDINATOR = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""
RUN_LAUNCHER = """\
run_launcher:
  module: orchestration.instance.run_launcher
  class: WarmRunLauncher
"""


def event_log_storage_yaml(home: Path) -> str:
    """The ``event_log_storage`` block, where Dagster's default puts the event log."""
    return EVENT_LOG_STORAGE.format(runs_dir=home.resolve() / "history" / "runs")


def default_instance_yaml(home: Path) -> str:
    """The whole file for ``home``."""
    return HEADER + event_log_storage_yaml(home) + RUN_COORDINATOR + RUN_LAUNCHER


def ensure_instance_config(home: Path) -> bool:
    """Write ``home/dagster.yaml`` unless it has content; whether it was written."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return False
    path.write_text(default_instance_yaml(home), encoding="utf-8")
    return True
