"""``WarmRunLauncher`` (``orchestration/instance/run_launcher.py``): runs launched the way the
daemon launches them — a real workspace with its code server, ``instance.launch_run`` — start as
forks of one warm worker, recover exactly what the cold path recovers, never run stale code, and
stop when terminated; a spare child waits for the next run and leaves with its worker."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.origin import JobPythonOrigin

from orchestration.artifacts.store import open_store
from orchestration.dbt import fork_server
from orchestration.dbt.project import manifest_path
from orchestration.instance.config import RUN_LAUNCHER
from orchestration.instance.run_launcher import WarmRunLauncher, is_warm_child
from orchestration.settings import REPO_ROOT, load_settings
from orchestration.tags import RESUME_RETRY_TAG, RUN_WORKER_PID_TAG
from tests.conftest import Pipeline, statuses, stored_run_results
from tests.dbt_graph import model_descendants

pytestmark = pytest.mark.integration

MIDDLE = "int_deals__converted"
RUN_TIMEOUT_SECONDS = 300
FORKED_FROM = re.compile(r"Started in a warm run worker \(pid (\d+), forked from (\d+)")


@contextmanager
def launching(pipeline: Pipeline) -> Iterator[tuple[Any, Any]]:
    """The instance (with the embedded config's launcher) and a workspace request context over
    ``workspace.yaml``, whose code server runs in its own process, as the daemon's does."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with (pipeline.dagster_home / "dagster.yaml").open("a") as config:
        config.write(RUN_LAUNCHER)
    with (
        pipeline.instance() as instance,
        WorkspaceProcessContext(
            instance, WorkspaceFileTarget([str(REPO_ROOT / "workspace.yaml")])
        ) as process_context,
    ):
        assert isinstance(instance.run_launcher, WarmRunLauncher)
        try:
            yield instance, process_context.create_request_context()
        finally:
            instance.run_launcher.dispose()


def remote_job(context: Any, name: str) -> tuple[Any, Any]:
    (location_name,) = context.get_code_location_entries()
    location = context.get_code_location(location_name)
    (repository,) = location.get_repositories().values()
    return location, repository.get_full_job(name)


def launch_new(instance: Any, context: Any, name: str, run_config: dict | None = None) -> str:
    """A new run of job ``name``, created and launched as the daemon does for a schedule."""
    from orchestration.definitions import job_by_name

    _, job = remote_job(context, name)
    run = instance.create_run_for_job(
        job_def=job_by_name(name),
        run_config=run_config,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
    )
    instance.launch_run(run.run_id, context)
    return run.run_id


def launch_reexecution(instance: Any, context: Any, parent_id: str, strategy: str) -> str:
    """*Re-execute → From failure / From asset failure*, created as the webserver does."""
    parent = instance.get_run_by_id(parent_id)
    location, job = remote_job(context, parent.job_name)
    tags = {RESUME_RETRY_TAG: "true"} if strategy == "FROM_FAILURE" else {}
    run = instance.create_reexecuted_run(
        request_context=context,
        parent_run=parent,
        code_location=location,
        remote_job=job,
        strategy=ReexecutionStrategy[strategy],
        extra_tags=tags,
        use_parent_run_tags=True,
    )
    instance.launch_run(run.run_id, context)
    return run.run_id


def wait_for_end(instance: Any, run_id: str) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.is_finished:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end within {RUN_TIMEOUT_SECONDS} s")


def forked_from(instance: Any, run_id: str) -> tuple[int, int]:
    """(the run's process, the warm worker it was forked from), from the run's own log."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        match = FORKED_FROM.search(entry.message or "")
        if match:
            return int(match.group(1)), int(match.group(2))
    raise AssertionError(f"run {run_id} did not start in a warm run worker")


def started_in(instance: Any, run_id: str) -> int:
    """The pid Dagster's run worker body reports for itself ("Started process for run")."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        match = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if match:
            return int(match.group(1))
    raise AssertionError(f"run {run_id} has no run-worker start event")


def executed_models(pipeline: Pipeline, run_id: str) -> set[str]:
    results = stored_run_results(open_store(pipeline.artifacts_uri), run_id)
    return {name for r in results for name, status in statuses(r).items() if status != "skipped"}


def messages(instance: Any, run_id: str) -> list[str]:
    return [entry.message or "" for entry in instance.all_logs(run_id)]


def repository_origin(context: Any) -> Any:
    return remote_job(context, "daily_pipeline")[1].get_python_origin().repository_origin


def process_state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process; ``None`` for a gone or zombie one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (fields[0], int(fields[1]))


def forks_of(worker: int) -> set[int]:
    """The worker's live forks (not, e.g., the resource tracker a library started in it)."""
    candidates = (int(path.name) for path in Path("/proc").glob("[0-9]*"))
    return {
        child
        for child in candidates
        if (process_state(child) or ("", 0))[1] == worker and is_warm_child(child)
    }


def poll(condition: Any, seconds: float = 10) -> bool:
    """Whether ``condition()`` becomes true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def waiting_spare(worker: int, *, besides: frozenset[int] = frozenset()) -> int:
    """The worker's one spare child (forked right after the worker answers), polled for."""
    deadline = time.monotonic() + 10
    while not (spares := forks_of(worker) - besides) and time.monotonic() < deadline:
        time.sleep(0.05)
    (spare,) = spares
    return spare


def opened_instance(pid: int, dagster_home: Path) -> bool:
    """Whether the process holds a file of the instance's storage open (the embedded event
    log keeps its index shard's connection; the worker itself never opens one)."""
    home = str(dagster_home.resolve())
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(home):
                    return True
    return False


def test_launched_runs_fork_one_warm_worker_recover_exactly_and_never_run_stale_code(
    pipeline: Pipeline, manifest_ready: Any
) -> None:
    pipeline.faults().inject(MIDDLE, times=1)
    needed = {MIDDLE} | model_descendants(MIDDLE)
    with launching(pipeline) as (instance, context):
        # The first run does not wait for the worker to load: it goes the default way.
        failed_id = launch_new(instance, context, "daily_pipeline")
        assert wait_for_end(instance, failed_id).status == DagsterRunStatus.FAILURE
        assert any("the warm run worker is loading" in m for m in messages(instance, failed_id))
        worker = instance.run_launcher.warm(repository_origin(context))
        # The next run's child is forked ahead, its instance open (a spare).
        spare = waiting_spare(worker)

        assert poll(lambda: opened_instance(spare, pipeline.dagster_home))

        retry_id = launch_reexecution(instance, context, failed_id, "FROM_FAILURE")
        # The spare after it is forked at once, but opens its instance only after this run.
        second_spare = waiting_spare(worker, besides=frozenset({spare}))
        assert not opened_instance(second_spare, pipeline.dagster_home)
        assert not instance.get_run_by_id(retry_id).is_finished
        retry = wait_for_end(instance, retry_id)
        assert retry.status == DagsterRunStatus.SUCCESS
        assert executed_models(pipeline, retry_id) == needed
        retry_pid, retry_worker = forked_from(instance, retry_id)
        assert retry_worker == worker and retry_pid == spare
        assert started_in(instance, retry_id) == retry_pid  # Dagster's own run-worker body
        assert retry.tags[RUN_WORKER_PID_TAG] == str(retry_pid)
        assert poll(lambda: opened_instance(second_spare, pipeline.dagster_home))

        asset_retry_id = launch_reexecution(instance, context, failed_id, "FROM_ASSET_FAILURE")
        assert wait_for_end(instance, asset_retry_id).status == DagsterRunStatus.SUCCESS
        asset_pid, asset_worker = forked_from(instance, asset_retry_id)
        assert asset_worker == worker and asset_pid == second_spare  # loaded once, forked
        # Their dbt started in the worker's fork server (dbt already imported), nobody else's.
        (folder,) = fork_server_folders(worker)
        served_runs = {
            line["target_path"].split("/invocations/")[1][:8]
            for line in fork_server.read_served(folder)
            if line["command"] == ["build"]
        }
        assert served_runs == {retry_id[:8], asset_retry_id[:8]}
        # The two runs' processes may still be exiting.
        next_spare = waiting_spare(worker, besides=frozenset({retry_pid, asset_pid}))

        # A new manifest (a `dbt parse` after a change): the next run must not use the
        # definitions loaded from the old one.
        manifest = manifest_path(load_settings())
        later = time.time() + 5
        os.utime(manifest, (later, later))
        config = {"ops": {"dbt_models": {"config": {"retry_from_run_id": failed_id}}}}
        artifacts_id = launch_new(instance, context, "recover_from_artifacts", config)
        assert wait_for_end(instance, artifacts_id).status == DagsterRunStatus.SUCCESS
        assert any("is reloading" in m for m in messages(instance, artifacts_id))
        assert executed_models(pipeline, artifacts_id) == needed
        assert instance.run_launcher.warm(repository_origin(context)) != worker
        # The replaced worker's spare leaves with it, having run nothing.
        deadline = time.monotonic() + 10
        while process_state(next_spare) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process_state(next_spare) is None


def dbt_processes_of(run_id: str) -> list[int]:
    """Live dbt processes of the run: their target folder (``DBT_TARGET_PATH``, set in their
    environment, not on the command line) is one of the run's invocation folders. A dbt the
    fork server forked shows the server's environment: its own log line names the folder."""
    marker = f"/invocations/{run_id[:8]}-"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                b"dbt" in (proc / "cmdline").read_bytes()
                and marker.encode() in (proc / "environ").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    for folder in fork_server_folders():
        for line in fork_server.read_served(folder):
            if marker in (line["target_path"] or "") and process_state(line["pid"]):
                found.append(line["pid"])
    return found


def fork_server_folders(worker: int | None = None) -> list[Path]:
    """Folders of the running dbt fork servers (of ``worker``'s, if given): their last
    argument."""
    folders = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            if fork_server.__name__.encode() not in args[:3]:
                continue
            if worker is None or (process_state(int(proc.name)) or ("", 0))[1] == worker:
                folders.append(Path(args[-1].decode()))
    return folders


def test_terminate_cancels_a_warm_run_and_stops_its_dbt(
    pipeline: Pipeline, manifest_ready: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBT_THREADS", "1")  # slow enough to be caught half-way
    with launching(pipeline) as (instance, context):
        instance.run_launcher.warm(repository_origin(context))
        run_id = launch_new(instance, context, "daily_pipeline")
        forked_from(instance, run_id)
        wait_for_dbt(instance, run_id)  # dbt is running now…
        assert instance.run_launcher.terminate(run_id)
        assert wait_for_end(instance, run_id).status == DagsterRunStatus.CANCELED
        assert not dbt_processes_of(run_id)  # …and stopped with the run


def wait_for_dbt(instance: Any, run_id: str) -> None:
    """Until the run's dbt build is running (after ingestion)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while not dbt_processes_of(run_id):
        assert time.monotonic() < deadline and not instance.get_run_by_id(run_id).is_finished
        time.sleep(0.2)


def test_run_monitoring_fails_a_warm_run_whose_process_died(
    pipeline: Pipeline, manifest_ready: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    monkeypatch.setenv("DBT_THREADS", "1")
    with launching(pipeline) as (instance, context):
        instance.run_launcher.warm(repository_origin(context))
        run_id = launch_new(instance, context, "daily_pipeline")
        forked_from(instance, run_id)
        wait_for_dbt(instance, run_id)
        run = instance.get_run_by_id(run_id)
        assert instance.run_launcher.check_run_worker_health(run).status.value == "RUNNING"
        pid = int(run.tags[RUN_WORKER_PID_TAG])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while is_warm_child(pid):  # until its warm worker has reaped it
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # The daemon's own monitoring step, as its loop calls it.
        (record,) = instance.get_run_records(RunsFilter(run_ids=[run_id]))
        monitor_started_run(instance, context, record, logging.getLogger("test"))
        run = instance.get_run_by_id(run_id)
        assert run.status == DagsterRunStatus.FAILURE
        messages = [e.message or "" for e in instance.all_logs(run_id)]
        assert any(f"run worker process {pid} is gone" in m for m in messages)
        for orphan in dbt_processes_of(run_id):  # the killed worker's dbt child
            with contextlib.suppress(ProcessLookupError):  # a served dbt ends with its client
                os.kill(orphan, signal.SIGKILL)


def test_a_code_location_in_another_environment_or_a_container_goes_the_default_way() -> None:
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    def origin(**kwargs: Any) -> JobPythonOrigin:
        pointer = ModuleCodePointer("orchestration.definitions", "defs", str(REPO_ROOT))
        return JobPythonOrigin(
            "daily_pipeline", RepositoryPythonOrigin(code_pointer=pointer, **kwargs)
        )

    assert WarmRunLauncher._warm_can_run(origin(executable_path=sys.executable))
    assert not WarmRunLauncher._warm_can_run(origin(executable_path="/opt/other/bin/python"))
    assert not WarmRunLauncher._warm_can_run(
        origin(executable_path=sys.executable, container_image="registry/pipeline:1")
    )
    assert not WarmRunLauncher._warm_can_run(None)


def test_a_warm_worker_holds_every_job_resolved_before_it_forks(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child reconstructs its run's job from the worker's definitions; resolving it there
    again (its asset graph, its ops) would be paid by every run."""
    import gc

    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )
    from dagster._core.origin import RepositoryPythonOrigin
    from dagster._serdes import serialize_value

    from orchestration.instance.warm_worker import preload

    pointer = ModuleCodePointer("orchestration.definitions", "defs", str(REPO_ROOT))
    origin = RepositoryPythonOrigin(executable_path=sys.executable, code_pointer=pointer)
    try:
        preload(serialize_value(origin))
    finally:
        gc.unfreeze()
    resolved: list[str] = []
    resolve = UnresolvedAssetJobDefinition.resolve

    def counting_resolve(self: UnresolvedAssetJobDefinition, *args: Any, **kwargs: Any) -> Any:
        resolved.append(self.name)
        return resolve(self, *args, **kwargs)

    monkeypatch.setattr(UnresolvedAssetJobDefinition, "resolve", counting_resolve)
    repository = ReconstructableRepository(pointer)
    for name in ("daily_pipeline", "weekly_full_refresh"):
        assert ReconstructableJob(repository, name).get_definition().name == name
    assert resolved == []
