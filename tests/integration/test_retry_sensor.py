"""retry_failed_assets_sensor against a real instance after real failing runs.

Each test makes real dbt runs fail with an injected fault, evaluates the sensor the way the
daemon does (``evaluate_tick`` with the repository's resources), and, where the sensor asks for a
retry, executes that RunRequest in-process as the daemon would launch it: the implicit asset job
with the request's asset selection, tags and run config. What a retry rebuilt is asserted on its
stored ``run_results.json``. One scenario per test; seven pipeline runs in all (~20 s each).

Every scenario runs on a SQLite and on a PostgreSQL Dagster instance (``BOTH_STORAGES``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunRequest,
    build_sensor_context,
    execute_job,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._daemon.sensor import fetch_existing_runs

from orchestration.artifacts.store import open_store
from orchestration.resources import ArtifactStoreResource
from orchestration.retry_sensor import tick as retry_tick
from orchestration.retry_sensor.alerts import DeliveryPolicy
from orchestration.settings import REPO_ROOT
from orchestration.tags import (
    ATTEMPT_TAG,
    PARENT_RUN_TAG,
    RETRY_OF_TAG,
    RETRY_ROOT_TAG,
    ROOT_RUN_TAG,
)
from tests.conftest import BOTH_STORAGES, Pipeline, free_port, statuses, stored_run_results
from tests.dbt_graph import model_descendants

# Every scenario on a SQLite and on a PostgreSQL Dagster instance (issue 5).
pytestmark = [pytest.mark.integration, BOTH_STORAGES]

SENSOR = "retry_failed_assets_sensor"
MIDDLE_MODEL = "int_deals__converted"
REPORT_ASSET = "revenue_report"
ASSET_JOB = "__ASSET_JOB"


@dataclass
class Tick:
    run_requests: list[RunRequest]
    skip_message: str | None
    cursor: str | None


class SensorDriver:
    """Evaluates the sensor tick after tick, carrying the cursor like the daemon does."""

    def __init__(self, pipeline: Pipeline) -> None:
        from orchestration.definitions import build_definitions

        self.pipeline = pipeline
        self.defs = build_definitions()
        self.sensor = self.defs.get_sensor_def(SENSOR)
        self.cursor: str | None = None

    def tick(self, instance: DagsterInstance | None = None) -> Tick:
        def evaluate(instance: DagsterInstance) -> Tick:
            context = build_sensor_context(
                instance=instance,
                cursor=self.cursor,
                definitions=self.defs,
                resources={"artifacts": ArtifactStoreResource(uri=self.pipeline.artifacts_uri)},
            )
            data = self.sensor.evaluate_tick(context)
            self.cursor = data.cursor
            return Tick(list(data.run_requests or []), data.skip_message, data.cursor)

        if instance is not None:
            return evaluate(instance)
        with self.pipeline.instance() as fresh:
            return evaluate(fresh)


def execute_retry(pipeline: Pipeline, request: RunRequest) -> Any:
    """Run a RunRequest as the daemon would: the implicit asset job, the request's selection."""
    job = ReconstructableRepository.for_module(
        "orchestration.definitions", "defs", working_directory=str(REPO_ROOT)
    ).get_reconstructable_job(ASSET_JOB)
    with pipeline.instance() as instance:
        return execute_job(
            job,
            instance=instance,
            asset_selection=list(request.asset_selection or []),
            tags=dict(request.tags),
            run_config=dict(request.run_config or {}),
            raise_on_error=False,
        )


def selected(request: RunRequest) -> set[str]:
    return {key.to_user_string() for key in request.asset_selection or []}


def models_run(pipeline: Pipeline, run_id: str) -> dict[str, str]:
    """dbt model name → status over every dbt invocation of ``run_id``."""
    found: dict[str, str] = {}
    for document in stored_run_results(open_store(pipeline.artifacts_uri), run_id):
        found.update(statuses(document))
    return found


def failed_daily_run(pipeline: Pipeline, job: str = "daily_pipeline") -> str:
    result = pipeline.run_job(job)
    assert not result.success, f"{job} was expected to fail on the injected fault"
    return result.run_id


@dataclass
class WebhookReceiver:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """A local HTTP receiver on 127.0.0.1 that records every JSON body POSTed to it."""
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            receiver.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/retry"
    monkeypatch.setenv("ORCHESTRATION_ALERT_WEBHOOK_URL", receiver.url)
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ScriptedReceiver:
    """Answers POSTs with the queued statuses, then 200; records what it accepted."""

    statuses: list[int]
    accepted: list[dict[str, Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)


@contextmanager
def scripted_receiver(port: int, statuses: list[int]) -> Iterator[ScriptedReceiver]:
    """A receiver on 127.0.0.1:``port`` from now until the block ends (refused before)."""
    receiver = ScriptedReceiver(list(statuses))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            receiver.answered.append(status)
            if status == 200:
                receiver.accepted.append(body)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATION_RETRY_BACKOFF_SECONDS", "0")


class CountingStorage:
    """Counts every call into the instance's run and event-log storages (the real queries)."""

    def __init__(self, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for label, storage in (
            ("runs", instance.run_storage),
            ("events", instance.event_log_storage),
        ):
            for name in dir(type(storage)):
                if name.startswith("__") or name in {"dispose", "optimize_for_webserver"}:
                    continue
                attribute = getattr(type(storage), name, None)
                if not callable(attribute) or isinstance(attribute, type):
                    continue
                bound = getattr(storage, name)
                monkeypatch.setattr(storage, name, self._wrap(f"{label}.{name}", bound))

    def _wrap(self, label: str, fn: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(label)
            return fn(*args, **kwargs)

        return counted

    def queries(self) -> list[str]:
        """The storage's query entry points (``get_*``); helpers and row decoding are left out."""
        return [call for call in self.calls if call.split(".", 1)[1].startswith("get_")]


def test_transient_fault_is_retried_once_rebuilding_only_the_failed_model_and_downstream(
    pipeline: Pipeline, no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.faults().inject(MIDDLE_MODEL, times=1)
    failed_run = failed_daily_run(pipeline)
    driver = SensorDriver(pipeline)

    with pipeline.instance() as instance:
        counter = CountingStorage(instance, monkeypatch)
        first = driver.tick(instance)
    # A fixed number of storage queries, whatever the number of assets (23 here): asset
    # records, blocking checks, in-flight runs, the runs the records name, earlier retries of
    # the failed chains; then one event-log read per failed *run* for its failure messages.
    # First, the watch: the event log's latest id (a first tick then reads everything).
    assert sorted(counter.queries()) == sorted(
        [
            "events.get_maximum_record_id",
            "runs.get_run_records",  # in flight
            "events.get_asset_records",
            "events.get_latest_asset_check_execution_by_key",
            "runs.get_run_records",  # the runs the asset records name
            "runs.get_run_records",  # earlier retries of the failed chains
            "events.get_logs_for_run",  # failure messages of the one failed run
            "events.get_records_for_run",  # (what get_logs_for_run runs)
        ]
    ), counter.calls

    assert len(first.run_requests) == 1, first.skip_message
    request = first.run_requests[0]
    expected_models = {MIDDLE_MODEL} | model_descendants(MIDDLE_MODEL)
    assert selected(request) == expected_models | {REPORT_ASSET}
    assert request.run_key == f"retry:{failed_run}:1"
    assert request.tags[RETRY_OF_TAG] == failed_run
    assert request.tags[RETRY_ROOT_TAG] == failed_run
    assert request.tags[ATTEMPT_TAG] == "1"
    assert request.tags["orchestration/trigger"] == SENSOR
    assert request.tags["orchestration/warehouse"] == "duckdb"  # deploy/ queue limit key
    assert request.tags["orchestration/plan_summary"].startswith(f"{len(selected(request))} to ")
    reasons = json.loads(request.tags["orchestration/plan_reasons"])
    assert reasons["reasons"][MIDDLE_MODEL] == "errored"
    assert "connection reset" in reasons["details"][MIDDLE_MODEL]
    assert reasons["reasons"]["fct_deals"] == "upstream_failed"

    retry = execute_retry(pipeline, request)
    assert retry.success
    rebuilt = models_run(pipeline, retry.run_id)
    assert set(rebuilt) == expected_models, "the retry must rebuild exactly M and downstream"
    assert set(rebuilt.values()) == {"success"}

    after = driver.tick()
    assert after.run_requests == []
    assert after.skip_message == "No failed assets: nothing to retry."


def test_permanent_fault_is_not_retried_and_reported_once(
    pipeline: Pipeline, webhook: WebhookReceiver, no_backoff: None
) -> None:
    pipeline.faults().inject(MIDDLE_MODEL)
    failed_run = failed_daily_run(pipeline)
    driver = SensorDriver(pipeline)

    first = driver.tick()
    assert first.run_requests == []
    assert first.skip_message is not None
    assert "deterministic" in first.skip_message
    assert failed_run[:8] in first.skip_message
    assert "alert sent" in first.skip_message

    second = driver.tick()
    assert second.run_requests == []
    assert "already reported" in (second.skip_message or "")

    assert len(webhook.bodies) == 1, webhook.bodies
    alert = webhook.bodies[0]
    assert alert["orchestration"]["chain_root"] == failed_run
    assert alert["orchestration"]["kind"] == "give_up_deterministic"
    assert MIDDLE_MODEL in alert["orchestration"]["assets"]
    assert "permission denied" in alert["text"]
    assert alert["blocks"][0]["type"] == "header"  # a Slack-compatible body


def test_budget_of_one_is_exhausted_after_one_retry_of_the_weekly_full_refresh(
    pipeline: Pipeline, webhook: WebhookReceiver, no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATION_RETRY_MAX_ATTEMPTS", "1")
    # Permanent, but with a message classified transient: every attempt fails "transiently".
    pipeline.faults().inject(MIDDLE_MODEL, message="connection reset by peer (while testing)")
    failed_run = failed_daily_run(pipeline, "weekly_full_refresh")
    driver = SensorDriver(pipeline)

    first = driver.tick()
    assert len(first.run_requests) == 1, first.skip_message
    request = first.run_requests[0]
    assert request.tags[ATTEMPT_TAG] == "1"
    # A retry of the weekly job rebuilds the way the weekly job does.
    assert request.run_config == {"ops": {"dbt_models": {"config": {"full_refresh": True}}}}
    assert request.tags["orchestration/full_refresh"] == "true"

    retry = execute_retry(pipeline, request)
    assert not retry.success

    second = driver.tick()
    assert second.run_requests == []
    assert "after 1 of 1 retry attempts" in (second.skip_message or "")
    assert len(webhook.bodies) == 1
    assert webhook.bodies[0]["orchestration"]["kind"] == "give_up_budget"
    assert webhook.bodies[0]["orchestration"]["chain_root"] == failed_run
    assert webhook.bodies[0]["orchestration"]["attempt"] == 1
    with pipeline.instance() as instance:
        retried = instance.get_run_by_id(retry.run_id)
    assert retried is not None and retried.tags[RETRY_ROOT_TAG] == failed_run

    third = driver.tick()
    assert third.run_requests == []
    assert len(webhook.bodies) == 1


def test_two_ticks_in_a_row_launch_once_and_a_lost_cursor_does_not_launch_again(
    pipeline: Pipeline, no_backoff: None
) -> None:
    pipeline.faults().inject(MIDDLE_MODEL, times=1)
    failed_run = failed_daily_run(pipeline)
    driver = SensorDriver(pipeline)

    first = driver.tick()
    assert [r.run_key for r in first.run_requests] == [f"retry:{failed_run}:1"]
    second = driver.tick()
    assert second.run_requests == []
    assert "already requested" in (second.skip_message or "")

    # A daemon restart that lost the cursor before the retry was submitted: no run is in
    # flight, so the sensor asks again, under the same run key. The key alone must stop a
    # second launch.
    driver.cursor = None
    again = driver.tick()
    assert [r.run_key for r in again.run_requests] == [f"retry:{failed_run}:1"]
    assert selected(again.run_requests[0]) == selected(first.run_requests[0])

    # The daemon launches the first request (tagged with its run key and the sensor's name,
    # as Dagster's sensor daemon tags the runs it creates) …
    request = first.run_requests[0]
    launched = execute_retry(
        pipeline,
        request.with_replaced_attrs(
            tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR}
        ),
    )
    # … and then the repeated one goes through Dagster's own run-key dedup: the daemon finds
    # the run already made for that key and, as it is no longer NOT_STARTED, skips it.
    with pipeline.instance() as instance:
        existing = fetch_existing_runs(instance, _SensorName(SENSOR), again.run_requests)
    assert {key: run.run_id for key, run in existing.items()} == {
        f"retry:{failed_run}:1": launched.run_id
    }
    assert existing[f"retry:{failed_run}:1"].status is DagsterRunStatus.SUCCESS

    # Once the retry has healed the chain, a tick without a cursor finds nothing to retry.
    driver.cursor = None
    assert driver.tick().run_requests == []


@dataclass(frozen=True)
class _SensorName:
    """What ``fetch_existing_runs`` reads of a RemoteSensor for runs launched in-process
    (no remote origin): the sensor's name."""

    name: str


def test_a_run_in_flight_blocks_a_launch(pipeline: Pipeline, no_backoff: None) -> None:
    pipeline.faults().inject(MIDDLE_MODEL, times=1)
    failed_daily_run(pipeline)
    from dagster import AssetKey

    from orchestration.definitions import build_definitions

    job_def = build_definitions().get_implicit_global_asset_job_def()
    with pipeline.instance() as instance:
        instance.create_run_for_job(
            job_def,
            asset_selection=frozenset({AssetKey(MIDDLE_MODEL)}),
            status=DagsterRunStatus.NOT_STARTED,  # QUEUED needs a remote origin (a webserver)
        )
    driver = SensorDriver(pipeline)

    tick = driver.tick()
    assert tick.run_requests == []
    assert "queued or running" in (tick.skip_message or "")


def test_an_alert_is_kept_until_the_receiver_accepts_it_and_every_give_up_is_alerted_once(
    pipeline: Pipeline, no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No wait between delivery attempts, so consecutive ticks retry at once.
    monkeypatch.setattr(
        retry_tick, "ALERT_DELIVERY", DeliveryPolicy(backoff_seconds=0, backoff_max_seconds=0)
    )
    port = free_port()  # nothing listens yet: connection refused
    monkeypatch.setenv("ORCHESTRATION_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{port}/hooks/retry")
    pipeline.faults().inject(MIDDLE_MODEL)
    failed_run = failed_daily_run(pipeline)
    driver = SensorDriver(pipeline)

    refused = driver.tick().skip_message or ""
    assert "deterministic" in refused and "NOT delivered (attempt 1 of 5" in refused
    with scripted_receiver(port, [500]) as receiver:
        server_error = driver.tick().skip_message or ""
        assert "alert not delivered yet" in server_error
        assert "NOT delivered (attempt 2 of 5: HTTP 500)" in server_error
        assert "alert sent" in (driver.tick().skip_message or "")
        assert "already reported" in (driver.tick().skip_message or "")
        assert receiver.answered == [500, 200]

        # Someone re-executes the failed model in the same chain; it fails again and the
        # sensor gives up on that run too: a second give-up, so a second alert.
        again = execute_retry(
            pipeline,
            RunRequest(
                asset_selection=[AssetKey(MIDDLE_MODEL)],
                tags={PARENT_RUN_TAG: failed_run, ROOT_RUN_TAG: failed_run},
            ),
        )
        assert not again.success
        assert "alert sent" in (driver.tick().skip_message or "")
        driver.tick()

    assert receiver.answered == [500, 200, 200]
    fields = [body["orchestration"] for body in receiver.accepted]
    assert [f["chain_root"] for f in fields] == [failed_run, failed_run]
    assert [f["kind"] for f in fields] == ["give_up_deterministic"] * 2
    assert failed_run[:8] in fields[0]["title"] and again.run_id[:8] in fields[1]["title"]


def test_while_nothing_new_fails_a_tick_reads_no_asset_and_the_next_failure_is_read_at_once(
    pipeline: Pipeline, no_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch (``retry_sensor.tick.watch``): a tick after a full read asks only where the event
    log ends and whether a run ended since; a run in progress does not make it read every asset,
    and the run's failure does, on the very next tick."""
    pipeline.faults().inject(MIDDLE_MODEL)  # deterministic: the sensor gives up on it
    failed_run = failed_daily_run(pipeline)
    driver = SensorDriver(pipeline)
    assert "deterministic" in (driver.tick().skip_message or "")

    with pipeline.instance() as instance:
        # A second nightly run in progress: planned events for every asset and a start — new
        # events, nothing failed or ended.
        job = driver.defs.resolve_job_def("daily_pipeline")
        busy = instance.create_run_for_job(job, status=DagsterRunStatus.NOT_STARTED)
        start = DagsterEvent(DagsterEventType.RUN_START.value, job_name=job.name)
        instance.report_dagster_event(start, run_id=busy.run_id)
        counter = CountingStorage(instance, monkeypatch)
        quiet = driver.tick(instance)
    assert counter.queries() == ["events.get_maximum_record_id"], counter.calls
    assert counter.calls.count("events.fetch_run_status_changes") == 3, counter.calls
    assert quiet.run_requests == []
    assert "Nothing new to decide" in (quiet.skip_message or "")
    assert f"gave up on run {failed_run[:8]} earlier" in (quiet.skip_message or "")

    with pipeline.instance() as instance:
        instance.report_run_failed(instance.get_run_by_id(busy.run_id))
        counter = CountingStorage(instance, monkeypatch)
        after = driver.tick(instance)
    assert "events.get_asset_records" in counter.queries(), counter.calls
    assert busy.run_id[:8] in (after.skip_message or ""), after.skip_message
