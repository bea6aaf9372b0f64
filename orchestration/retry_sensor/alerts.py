"""Send alerts to a Slack-compatible incoming webhook.

Sending must never fail the sensor tick that sends it, so nothing here raises. Alerts are owed
until the receiver accepts them: `deliver_pending_alerts` sends what the sensor cursor's outbox
holds, once per tick, and reschedules a failed delivery with backoff instead of dropping it.
Webhook URLs are secrets (the path is the credential), so logs name only ``scheme://host``.
Standard library only: the sensor runs in the daemon, where every extra dependency is one more
thing that can fail to import.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestration.recovery.cursor import RetryCursor

logger = logging.getLogger(__name__)

SLACK_HEADER_MAX_CHARS = 150  # Slack rejects longer plain_text headers
SLACK_SECTION_MAX_CHARS = 3000  # Slack rejects longer section text
ALERT_MAX_ASSETS_LISTED = 20
_RETRYABLE_HTTP_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Alert:
    """One message about one failure chain (`kind` is e.g. a DecisionKind value)."""

    title: str
    text: str
    chain_root: str
    attempt: int
    kind: str
    run_url: str | None = None
    assets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, for the sensor cursor's outbox."""
        return {**asdict(self), "assets": list(self.assets)}

    @classmethod
    def from_dict(cls, data: Any) -> Alert:
        return cls(
            title=str(data["title"]),
            text=str(data["text"]),
            chain_root=str(data["chain_root"]),
            attempt=int(data["attempt"]),
            kind=str(data["kind"]),
            run_url=None if data.get("run_url") is None else str(data["run_url"]),
            assets=tuple(str(asset) for asset in data.get("assets") or ()),
        )


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body, plus an "orchestration" object for machine consumers.

    "text" is the notification/fallback text; "blocks" the rendered message. Slack ignores the
    extra key; other receivers (a log pipeline, a test) read the structured fields from it.
    """
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _truncate(alert.title, SLACK_HEADER_MAX_CHARS)},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _truncate(_escape(alert.text), SLACK_SECTION_MAX_CHARS),
            },
        },
    ]
    if alert.assets:
        listed = ", ".join(f"`{_escape(a)}`" for a in alert.assets[:ALERT_MAX_ASSETS_LISTED])
        more = len(alert.assets) - ALERT_MAX_ASSETS_LISTED
        if more > 0:
            listed += f" and {more} more"
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _truncate(f"*Assets:* {listed}", SLACK_SECTION_MAX_CHARS),
                },
            }
        )
    context = f"chain root `{_escape(alert.chain_root)}` · attempt {alert.attempt} · {alert.kind}"
    if alert.run_url:
        context += f" · <{alert.run_url}|open run>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {
        "text": f"{alert.title}: {alert.text}",
        "blocks": blocks,
        "orchestration": {
            "title": alert.title,
            "text": alert.text,
            "chain_root": alert.chain_root,
            "attempt": alert.attempt,
            "kind": alert.kind,
            "run_url": alert.run_url,
            "assets": list(alert.assets),
        },
    }


def post_alert(
    url: str,
    alert: Alert,
    *,
    timeout_seconds: float = 10.0,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
) -> bool:
    """POST `alert` as JSON to `url`; True once a 2xx answer arrives.

    Retries connection errors, timeouts, 5xx and 408/425/429, waiting `backoff_seconds`, then
    twice that, and so on. Other 4xx answers mean the request itself is wrong and are not retried.
    Never raises: on failure it logs a warning (with the URL reduced to scheme://host) and returns
    False.
    """
    where = redact_url(url)
    problem, retryable = "no attempt made", False
    for attempt in range(1, max(attempts, 1) + 1):
        problem, retryable = _post_once(url, alert, timeout_seconds=timeout_seconds)
        if not problem:
            return True
        if not retryable or attempt >= attempts:
            break
        logger.info(
            "alert %r to %s: attempt %d of %d failed (%s); retrying",
            alert.title,
            where,
            attempt,
            attempts,
            problem,
        )
        time.sleep(backoff_seconds * 2 ** (attempt - 1))
    logger.warning(
        "alert %r to %s not delivered after %d attempt(s): %s",
        alert.title,
        where,
        attempt,
        problem,
    )
    return False


def _post_once(url: str, alert: Alert, *, timeout_seconds: float) -> tuple[str, bool]:
    """One POST: ("", False) when accepted, else (the problem, redacted; whether to retry)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in ("http", "https"):
        return f"webhook URL {redact_url(url)} is not http(s)", False
    try:
        body = json.dumps(slack_payload(alert)).encode("utf-8")
    except (TypeError, ValueError) as exc:
        return f"cannot encode it as JSON ({exc})", False
    # Built per call so proxy environment variables are read now, not at first import.
    opener = urllib.request.build_opener()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            response.read()
            return "", False
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}", exc.code >= 500 or exc.code in _RETRYABLE_HTTP_STATUSES
    except urllib.error.URLError as exc:
        return _describe(exc.reason, url), True
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        return _describe(exc, url), True


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the outbox retries: one POST per alert per tick, backoff between ticks, a bound."""

    max_deliveries: int = 5
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 600.0
    timeout_seconds: float = 5.0


@dataclass
class DeliveryReport:
    cursor: RetryCursor
    lines: list[str] = field(default_factory=list)
    """One line per alert tried this tick, for the tick's SkipReason."""
    errors: list[str] = field(default_factory=list)
    """One line per alert given up on this tick, for the sensor's ERROR log."""


def deliver_pending_alerts(
    cursor: RetryCursor, url: str | None, *, now: float, policy: DeliveryPolicy
) -> DeliveryReport:
    """Send every due alert in the cursor's outbox once; keep what the receiver did not accept.

    A 2xx answer removes the alert from the outbox for good (at most once). Anything else —
    refused, timed out, 5xx, even a 4xx, which may be a misconfigured receiver fixed later — is
    retried on a later tick after a backoff, until `policy.max_deliveries` attempts failed.
    """
    report = DeliveryReport(cursor)
    if not url:
        return report  # nowhere to send: alerts stay owed until a webhook is configured
    for give_up_id in cursor.due_alerts(now):
        pending = report.cursor.alerts[give_up_id]
        try:
            alert = Alert.from_dict(pending.payload)
        except (KeyError, TypeError, ValueError) as exc:
            report.cursor = report.cursor.with_alert_delivered(give_up_id)
            report.errors.append(f"alert for run {give_up_id} dropped: unreadable ({exc})")
            continue
        problem, _ = _post_once(url, alert, timeout_seconds=policy.timeout_seconds)
        name = f"alert {alert.title!r} for run {give_up_id[:8]}"
        if not problem:
            report.cursor = report.cursor.with_alert_delivered(give_up_id)
            report.lines.append(f"{name}: alert sent to {redact_url(url)}")
            continue
        attempt = pending.failures + 1
        report.cursor, dropped = report.cursor.with_alert_failed(
            give_up_id,
            now=now,
            max_deliveries=policy.max_deliveries,
            base_seconds=policy.backoff_seconds,
            max_seconds=policy.backoff_max_seconds,
        )
        if dropped:
            line = (
                f"{name}: alert NOT delivered to {redact_url(url)} after {attempt} attempts "
                f"({problem}); giving up on it — chain root {alert.chain_root}: {alert.text}"
            )
            report.errors.append(line)
            report.lines.append(line)
        else:
            due = report.cursor.alerts[give_up_id].next_attempt_at
            report.lines.append(
                f"{name}: alert NOT delivered (attempt {attempt} of {policy.max_deliveries}: "
                f"{problem}); next try in {max(due - now, 0):.0f} s"
            )
    return report


def redact_url(url: str) -> str:
    """scheme://host[:port] of `url`: what may be logged about a webhook URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except (TypeError, ValueError, AttributeError):
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}"


def _describe(error: object, url: str) -> str:
    # Some errors quote the URL ("unknown url type: ..."); keep its secret parts out of logs.
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = text.replace(url, redact_url(url))
    parts = urllib.parse.urlsplit(url)
    if len(parts.path) > 1:
        text = text.replace(parts.path, "/<redacted>")
    if parts.query:
        text = text.replace(parts.query, "<redacted>")
    return text


def _escape(text: str) -> str:
    # Slack mrkdwn control characters; everything else is shown as typed.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
