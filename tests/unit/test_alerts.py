"""Webhook alerts against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestration.alerts import (
    ALERT_MAX_ASSETS_LISTED,
    Alert,
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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
