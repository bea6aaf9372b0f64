"""Webhook alerts against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestration.recovery.cursor import RetryCursor
from orchestration.retry_sensor.alerts import (
    ALERT_MAX_ASSETS_LISTED,
    Alert,
    DeliveryPolicy,
    deliver_pending_alerts,
    post_alert,
    redact_url,
    slack_payload,
)

SECRET_PATH = "/services/T000SECRET/B000SECRET/XXXXsecrettokenXXXX"

ALERT = Alert(
    title="Retry gave up: daily_pipeline",
    text="giving up on run abc12345 after 3 of 3 retry attempts: transient error 'timed out'",
    chain_root="abc12345-0000",
    attempt=3,
    kind="give_up_budget",
    run_url="http://localhost:3000/runs/abc12345-0000",
    assets=("stg_orders", "orders"),
)


@dataclass
class Webhook:
    """A recording webhook receiver that answers with the queued statuses, then 200."""

    url: str
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would intercept requests meant for 127.0.0.1.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serve(0) as hook:
        yield hook


@contextmanager
def serve(port: int) -> Iterator[Webhook]:
    """A recording receiver on 127.0.0.1:``port`` (0: any free port) until the block ends."""
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            hook.bodies.append(json.loads(self.rfile.read(length)))
            hook.paths.append(self.path)
            status = hook.statuses.pop(0) if hook.statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_webhook_receives_the_slack_payload(webhook: Webhook) -> None:
    assert post_alert(webhook.url, ALERT, backoff_seconds=0) is True
    assert (webhook.paths, webhook.bodies) == ([SECRET_PATH], [slack_payload(ALERT)])


def test_a_server_error_is_retried_until_it_succeeds(webhook: Webhook) -> None:
    webhook.statuses = [500]
    assert post_alert(webhook.url, ALERT, backoff_seconds=0) is True
    assert len(webhook.bodies) == 2


def test_a_server_error_on_every_attempt_returns_false(webhook: Webhook) -> None:
    webhook.statuses = [503, 503, 503]
    assert post_alert(webhook.url, ALERT, attempts=3, backoff_seconds=0) is False
    assert len(webhook.bodies) == 3


def test_a_client_error_is_not_retried(webhook: Webhook) -> None:
    webhook.statuses = [404]
    assert post_alert(webhook.url, ALERT, backoff_seconds=0) is False
    assert len(webhook.bodies) == 1


def test_an_unreachable_webhook_returns_false_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    started = time.monotonic()
    assert post_alert(url, ALERT, attempts=2, backoff_seconds=0.01, timeout_seconds=2) is False
    assert time.monotonic() - started < 2


def test_a_non_http_url_returns_false_without_raising() -> None:
    assert post_alert(f"file://{SECRET_PATH}", ALERT) is False


def test_logs_never_contain_the_secret_path(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook.statuses = [500, 500]
    unreachable = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    post_alert(webhook.url, ALERT, attempts=2, backoff_seconds=0)
    post_alert(unreachable, ALERT, attempts=2, backoff_seconds=0)
    post_alert(f"bogus{SECRET_PATH}", ALERT, attempts=1)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SECRET" not in logged and "secrettoken" not in logged
    assert "not delivered" in logged


def test_a_failed_delivery_is_logged_as_a_warning_naming_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    post_alert(f"http://127.0.0.1:{port}{SECRET_PATH}", ALERT, attempts=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"http://127.0.0.1:{port}" in warnings[0]


def test_redaction_keeps_only_scheme_and_host() -> None:
    url = f"https://user:pw@hooks.slack.com:443{SECRET_PATH}?token=abc"
    assert redact_url(url) == "https://hooks.slack.com:443"


def test_the_payload_carries_structured_fields_for_machines() -> None:
    assert slack_payload(ALERT)["orchestration"] == {
        "title": ALERT.title,
        "text": ALERT.text,
        "chain_root": "abc12345-0000",
        "attempt": 3,
        "kind": "give_up_budget",
        "run_url": "http://localhost:3000/runs/abc12345-0000",
        "assets": ["stg_orders", "orders"],
    }


def test_the_payload_has_fallback_text_and_blocks() -> None:
    payload = slack_payload(ALERT)
    assert payload["text"].startswith(ALERT.title)
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": ALERT.title},
    }


def test_the_payload_links_the_run() -> None:
    context = slack_payload(ALERT)["blocks"][-1]["elements"][0]["text"]
    assert "<http://localhost:3000/runs/abc12345-0000|open run>" in context


def test_a_long_asset_list_is_shortened_in_the_message_but_complete_in_the_fields() -> None:
    assets = tuple(f"model_{i}" for i in range(ALERT_MAX_ASSETS_LISTED + 5))
    payload = slack_payload(Alert("t", "x", "root", 1, "launch", assets=assets))
    assert "and 5 more" in payload["blocks"][2]["text"]["text"]
    assert len(payload["orchestration"]["assets"]) == ALERT_MAX_ASSETS_LISTED + 5


def test_mrkdwn_control_characters_in_the_text_are_escaped() -> None:
    payload = slack_payload(Alert("t", "a < b & c > d", "root", 1, "launch"))
    assert payload["blocks"][1]["text"]["text"] == "a &lt; b &amp; c &gt; d"


DELIVERY = DeliveryPolicy(max_deliveries=4, backoff_seconds=30, backoff_max_seconds=600)


def accepted(hook: Webhook, statuses_sent: list[int]) -> int:
    """How many POSTs the receiver accepted: those not answered with a queued error status."""
    return len(hook.bodies) - len(statuses_sent)


def test_an_alert_refused_then_failed_then_accepted_is_delivered_exactly_once() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    cursor = RetryCursor().with_alert("run-1", ALERT.to_dict(), now=1000.0)

    refused = deliver_pending_alerts(cursor, url, now=1000.0, policy=DELIVERY)
    assert set(refused.cursor.alerts) == {"run-1"}  # kept: nobody accepted it
    assert "NOT delivered (attempt 1 of 4" in refused.lines[0] and not refused.errors
    assert SECRET_PATH not in refused.lines[0]

    with serve(port) as hook:
        hook.statuses = [500]
        early = deliver_pending_alerts(refused.cursor, url, now=1029.0, policy=DELIVERY)
        assert (early.lines, hook.bodies) == ([], [])  # backing off: 30 s after the refusal
        failed = deliver_pending_alerts(early.cursor, url, now=1030.0, policy=DELIVERY)
        assert "NOT delivered (attempt 2 of 4: HTTP 500); next try in 60 s" in failed.lines[0]
        sent = deliver_pending_alerts(failed.cursor, url, now=1090.0, policy=DELIVERY)
        assert "alert sent" in sent.lines[0]
        later = deliver_pending_alerts(sent.cursor, url, now=99999.0, policy=DELIVERY)
        again = deliver_pending_alerts(
            later.cursor.with_alert("run-1", ALERT.to_dict(), now=99999.0),
            url,
            now=99999.0,
            policy=DELIVERY,
        )

    assert len(hook.bodies) == 2 and accepted(hook, [500]) == 1  # the 500, then the one
    assert hook.bodies[-1] == slack_payload(ALERT)
    assert (dict(again.cursor.alerts), later.lines, again.lines) == ({}, [], [])
    assert "run-1" in again.cursor.reported


def test_an_alert_never_accepted_is_given_up_after_the_bound_with_one_error_line() -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    cursor = RetryCursor().with_alert("run-1", ALERT.to_dict(), now=0.0)
    errors: list[str] = []
    lines: list[str] = []
    for now in range(0, 3600, 10):  # a tick every 10 s for an hour
        report = deliver_pending_alerts(cursor, url, now=float(now), policy=DELIVERY)
        cursor = report.cursor
        errors += report.errors
        lines += report.lines

    assert len(lines) == DELIVERY.max_deliveries
    assert len(errors) == 1 and errors[0] == lines[-1]
    assert "NOT delivered" in errors[0] and "after 4 attempts" in errors[0]
    assert ALERT.title in errors[0] and ALERT.chain_root in errors[0]
    assert SECRET_PATH not in errors[0]
    assert dict(cursor.alerts) == {} and "run-1" in cursor.reported


def test_without_a_webhook_alerts_stay_owed() -> None:
    cursor = RetryCursor().with_alert("run-1", ALERT.to_dict(), now=0.0)
    report = deliver_pending_alerts(cursor, None, now=10.0, policy=DELIVERY)
    assert report.cursor == cursor and report.lines == []


def test_an_alert_survives_the_cursors_json() -> None:
    cursor = RetryCursor().with_alert("run-1", ALERT.to_dict(), now=5.0)
    restored = RetryCursor.from_json(cursor.to_json())
    assert Alert.from_dict(restored.alerts["run-1"].payload) == ALERT
