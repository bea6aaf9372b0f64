"""Classify failure messages as transient, deterministic or unknown.

The retry sensor only retries what a later attempt can plausibly fix. The knowledge of which
message means what is data, not code: `error_patterns.json` next to this module lists one regex per
known error with the reason it belongs to its kind, so adding a pattern needs no code change.

Precedence is the file order: the first pattern whose regex matches decides. The file lists, in
order, the fault-injection markers (they declare their kind), transient concurrency conflicts whose
text names catalog objects, every deterministic pattern, then the remaining transient ones.
Deterministic errors go before the generic transient phrases because they quote user data and
identifiers (``Could not convert string 'timed out' to INT32``) while transient messages are fixed
text from drivers and servers; retrying a deterministic error wastes the whole budget and delays the
alert a person needs.

A message no pattern matches is ``unknown``; `policy.RetryPolicy.retry_unknown_errors` decides what
happens to it (by default: not retried).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestration.errors import ConfigurationError

PATTERNS_FILE_NAME = "error_patterns.json"
PATTERNS_FILE_VERSION = 1
ANY_ADAPTER = "any"
EXCERPT_MAX_CHARS = 200

_PATTERN_KEYS = frozenset({"name", "kind", "regex", "adapters", "why"})
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


class ErrorKind(StrEnum):
    TRANSIENT = "transient"
    DETERMINISTIC = "deterministic"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ErrorPattern:
    """One known error: `regex` is searched case-insensitively in a failure message."""

    name: str
    kind: ErrorKind
    regex: str
    adapters: tuple[str, ...]
    why: str
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once per pattern; raises re.error for load_patterns to report.
        object.__setattr__(self, "_compiled", re.compile(self.regex, re.IGNORECASE))

    def applies_to(self, adapter: str | None) -> bool:
        """True when the pattern is meant for `adapter` (None: the adapter is not known)."""
        return adapter is None or ANY_ADAPTER in self.adapters or adapter.lower() in self.adapters

    def search(self, message: str) -> re.Match[str] | None:
        return self._compiled.search(message)


@dataclass(frozen=True)
class Classification:
    """The verdict on a failure: `pattern` is the name of the matching pattern, if any."""

    kind: ErrorKind
    pattern: str | None
    message_excerpt: str


def load_patterns(text: str, *, source: str) -> tuple[ErrorPattern, ...]:
    """Parse and validate a patterns file; every problem names `source` and the entry."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{source}: not valid JSON ({exc}); fix the file or restore it from git"
        ) from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"{source}: expected a JSON object with 'version' and 'patterns'")
    unknown_keys = {k for k in document if not k.startswith("_")} - {"version", "patterns"}
    if unknown_keys:
        raise ConfigurationError(
            f"{source}: unknown top-level keys {sorted(unknown_keys)}; "
            "expected 'version' and 'patterns' (prefix comments with '_')"
        )
    if document.get("version") != PATTERNS_FILE_VERSION:
        raise ConfigurationError(
            f"{source}: version {document.get('version')!r} is not supported; "
            f'set "version": {PATTERNS_FILE_VERSION}'
        )
    entries = document.get("patterns")
    if not isinstance(entries, list):
        raise ConfigurationError(f"{source}: 'patterns' must be a list of pattern objects")

    patterns: list[ErrorPattern] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        pattern = _parse_entry(entry, where=f"{source}: pattern #{index}")
        if pattern.name in seen:
            raise ConfigurationError(
                f"{source}: pattern #{index} ({pattern.name!r}): duplicate name; "
                "pattern names must be unique"
            )
        seen.add(pattern.name)
        patterns.append(pattern)
    return tuple(patterns)


def _parse_entry(entry: Any, *, where: str) -> ErrorPattern:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: expected an object, got {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str):
        where = f"{where} ({name!r})"
    missing = _PATTERN_KEYS - entry.keys()
    extra = entry.keys() - _PATTERN_KEYS
    if missing or extra:
        raise ConfigurationError(
            f"{where}: keys must be exactly {sorted(_PATTERN_KEYS)}"
            f" (missing {sorted(missing)}, unknown {sorted(extra)})"
        )
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(f"{where}: 'name' must be a lower_snake_case string")
    kind = entry["kind"]
    if kind not in (ErrorKind.TRANSIENT, ErrorKind.DETERMINISTIC):
        raise ConfigurationError(f"{where}: 'kind' is {kind!r}; use 'transient' or 'deterministic'")
    adapters = entry["adapters"]
    if (
        not isinstance(adapters, list)
        or not adapters
        or not all(isinstance(a, str) and _NAME_RE.fullmatch(a) for a in adapters)
    ):
        raise ConfigurationError(
            f"{where}: 'adapters' must be a non-empty list of dbt adapter types "
            "such as 'duckdb', 'postgres', or 'any'"
        )
    why = entry["why"]
    if not isinstance(why, str) or not why.strip():
        raise ConfigurationError(f"{where}: 'why' must say why this error is {kind}")
    regex = entry["regex"]
    if not isinstance(regex, str) or not regex:
        raise ConfigurationError(f"{where}: 'regex' must be a non-empty string")
    try:
        pattern = ErrorPattern(
            name=name, kind=ErrorKind(kind), regex=regex, adapters=tuple(adapters), why=why
        )
    except re.error as exc:
        raise ConfigurationError(f"{where}: 'regex' does not compile: {exc}") from exc
    if pattern.search(""):
        # "a|" or "x*" would match every message and silently swallow everything after it.
        raise ConfigurationError(f"{where}: 'regex' matches the empty string, so it matches all")
    return pattern


@functools.cache
def default_patterns() -> tuple[ErrorPattern, ...]:
    """The patterns shipped in `error_patterns.json`, read on first use."""
    resource = importlib.resources.files("orchestration.recovery").joinpath(PATTERNS_FILE_NAME)
    return load_patterns(
        resource.read_text(encoding="utf-8"),
        source=f"orchestration/recovery/{PATTERNS_FILE_NAME}",
    )


def classify(
    message: str, patterns: Sequence[ErrorPattern], *, adapter: str | None = None
) -> Classification:
    """The first pattern (in order) matching `message` decides; none matching: unknown.

    `adapter` is the dbt adapter type ("duckdb", "postgres"); patterns for other adapters are
    skipped. None means "not known": every pattern applies.
    """
    for pattern in patterns:
        if not pattern.applies_to(adapter):
            continue
        match = pattern.search(message)
        if match is not None:
            return Classification(pattern.kind, pattern.name, _matched_line(message, match))
    return Classification(ErrorKind.UNKNOWN, None, _excerpt(message))


def classify_many(
    messages: Iterable[str], patterns: Sequence[ErrorPattern], *, adapter: str | None = None
) -> Classification:
    """Classify a run failure made of several messages (step failure, dbt errors, engine events).

    Deterministic if any message is: one permanent cause fails the retry whatever else happened.
    Transient if at least one message is transient and no known one is not; unknown messages are
    ignored here, because a failed run always carries generic wrappers ("Step failed") next to the
    message that says why. Otherwise unknown. The returned classification is the first message of
    the deciding kind.
    """
    first_transient: Classification | None = None
    first_unknown: Classification | None = None
    for message in messages:
        verdict = classify(message, patterns, adapter=adapter)
        if verdict.kind is ErrorKind.DETERMINISTIC:
            return verdict
        if verdict.kind is ErrorKind.TRANSIENT:
            first_transient = first_transient or verdict
        elif first_unknown is None and verdict.message_excerpt:
            first_unknown = verdict
    return first_transient or first_unknown or Classification(ErrorKind.UNKNOWN, None, "")


def _matched_line(message: str, match: re.Match[str]) -> str:
    start = message.rfind("\n", 0, match.start()) + 1
    end = message.find("\n", match.start())
    return _excerpt(message[start : end if end != -1 else len(message)])


def _excerpt(text: str) -> str:
    collapsed = " ".join(text.split())
    if len(collapsed) <= EXCERPT_MAX_CHARS:
        return collapsed
    return collapsed[: EXCERPT_MAX_CHARS - 1] + "…"
