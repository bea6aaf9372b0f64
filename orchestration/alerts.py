"""Send alerts to a Slack-compatible incoming webhook.

An alert is best effort: it must never fail the sensor tick that sends it, so `post_alert` returns
False instead of raising. Webhook URLs are secrets (the path is the credential), so logs name only
``scheme://host``. Standard library only: the sensor runs in the daemon, where every extra
dependency is one more thing that can fail to import.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

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
    scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in ("http", "https"):
        logger.warning("alert %r not sent: webhook URL %s is not http(s)", alert.title, where)
        return False
    try:
        body = json.dumps(slack_payload(alert)).encode("utf-8")
    except (TypeError, ValueError) as exc:
        logger.warning("alert %r not sent: cannot encode it as JSON (%s)", alert.title, exc)
        return False

    # Built per call so proxy environment variables are read now, not at first import.
    opener = urllib.request.build_opener()
    problem = "no attempt made"
    for attempt in range(1, max(attempts, 1) + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        retryable = True
        try:
            with opener.open(request, timeout=timeout_seconds) as response:
                response.read()
                return True
        except urllib.error.HTTPError as exc:
            exc.close()
            problem = f"HTTP {exc.code}"
            retryable = exc.code >= 500 or exc.code in _RETRYABLE_HTTP_STATUSES
        except urllib.error.URLError as exc:
            problem = _describe(exc.reason, url)
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
            problem = _describe(exc, url)
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
