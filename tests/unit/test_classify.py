"""Error classification: the shipped patterns against real-looking dbt / DuckDB / Postgres text."""

from __future__ import annotations

import json

import pytest

from orchestration.errors import ConfigurationError
from orchestration.recovery.classify import (
    EXCERPT_MAX_CHARS,
    Classification,
    ErrorKind,
    classify,
    classify_many,
    default_patterns,
    load_patterns,
)

T = ErrorKind.TRANSIENT
D = ErrorKind.DETERMINISTIC

# (message, kind, pattern name). Every shipped pattern must appear at least once (checked below).
EXAMPLES: list[tuple[str, ErrorKind, str]] = [
    # fault injection (this project's own macro raises through DuckDB's error())
    (
        "Runtime Error in model stg_orders (models/staging/stg_orders.sql)\n"
        "  Invalid Input Error: connection reset by peer (injected transient fault in model "
        "stg_orders)",
        T,
        "injected_transient_fault",
    ),
    (
        "Runtime Error in model stg_orders (models/staging/stg_orders.sql)\n"
        "  Invalid Input Error: permission denied for table stg_orders (injected permanent fault)",
        D,
        "injected_permanent_fault",
    ),
    # concurrency conflicts
    (
        'Runtime Error\n  IO Error: Could not set lock on file "/data/warehouse.duckdb": '
        "Conflicting lock is held in /usr/bin/python3.11 (PID 4242) by user dagster. See also "
        "https://duckdb.org/docs/stable/connect/concurrency",
        T,
        "duckdb_file_lock",
    ),
    (
        "Runtime Error in model orders (models/marts/orders.sql)\n"
        '  TransactionContext Error: Catalog write-write conflict on create with "orders"',
        T,
        "duckdb_write_conflict",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n  deadlock detected\n"
        "  DETAIL:  Process 812 waits for AccessExclusiveLock on relation 16420 of database 16384;"
        " blocked by process 815.",
        T,
        "postgres_deadlock",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        '  could not obtain lock on relation "orders"',
        T,
        "postgres_lock_not_available",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  could not serialize access due to concurrent update",
        T,
        "postgres_serialization_failure",
    ),
    (
        "Database Error in model customers (models/marts/customers.sql)\n"
        "  could not open relation with OID 16423",
        T,
        "postgres_relation_oid_race",
    ),
    # deterministic
    (
        "Compilation Error in model orders (models/marts/orders.sql)\n"
        "  Model 'model.shop.orders' (models/marts/orders.sql) depends on a node named "
        "'stg_order' which was not found",
        D,
        "dbt_compilation_error",
    ),
    (
        "Parsing Error\n  Error reading shop: marts/orders.yml - Runtime Error\n"
        "    Syntax error near line 7",
        D,
        "dbt_parsing_error",
    ),
    (
        "Runtime Error in model orders (models/marts/orders.sql)\n"
        '  Parser Error: syntax error at or near "form"',
        D,
        "sql_syntax_error",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        '  syntax error at or near "form"\n  LINE 4:     form "shop"."main"."stg_orders"',
        D,
        "sql_syntax_error",
    ),
    (
        "Runtime Error in model x (models/x.sql)\n"
        "  Catalog Error: Table with name foo does not exist!\n"
        '  Did you mean "food"?',
        D,
        "missing_catalog_object",
    ),
    (
        "Database Error in model stg_orders (models/staging/stg_orders.sql)\n"
        '  relation "raw.orders" does not exist\n  LINE 3: from "shop"."raw"."orders"',
        D,
        "missing_relation",
    ),
    (
        "Runtime Error in model orders (models/marts/orders.sql)\n"
        '  Binder Error: Referenced column "amount" not found in FROM clause!\n'
        '  Candidate bindings: "stg_orders.amount_cents"',
        D,
        "duckdb_binder_error",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  column o.amount does not exist\n  HINT:  Perhaps you meant to reference the column "
        '"o.amount_cents".',
        D,
        "missing_column",
    ),
    (
        "Failure in test not_null_orders_order_id (models/marts/orders.yml)\n"
        "  Got 3 results, configured to fail if != 0",
        D,
        "dbt_test_failed",
    ),
    (
        'connection to server at "db.internal" (10.0.0.5), port 5432 failed: FATAL:  password '
        'authentication failed for user "dbt"',
        D,
        "authentication_failed",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  permission denied for schema marts",
        D,
        "permission_denied",
    ),
    (
        "Runtime Error in model stg_payments (models/staging/stg_payments.sql)\n"
        "  Conversion Error: Could not convert string 'n/a' to INT32",
        D,
        "conversion_error",
    ),
    (
        "Database Error in model stg_payments (models/staging/stg_payments.sql)\n"
        '  invalid input syntax for type integer: "n/a"',
        D,
        "conversion_error",
    ),
    (
        "Runtime Error in model revenue (models/marts/revenue.sql)\n"
        "  Out of Range Error: Overflow in multiplication of INT32 (2147483647 * 2)!",
        D,
        "value_out_of_range",
    ),
    (
        "Database Error in model margins (models/marts/margins.sql)\n  division by zero",
        D,
        "division_by_zero",
    ),
    (
        "Database Error in model customers (models/marts/customers.sql)\n"
        '  duplicate key value violates unique constraint "customers_pkey"\n'
        "  DETAIL:  Key (customer_id)=(42) already exists.",
        D,
        "constraint_violation",
    ),
    (
        "Runtime Error in model customers (models/marts/customers.sql)\n"
        "  Constraint Error: NOT NULL constraint failed: customers.customer_id",
        D,
        "constraint_violation",
    ),
    # transient
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  canceling statement due to statement timeout",
        T,
        "statement_timeout",
    ),
    (
        "Run timed out due to taking longer than 3600 seconds to complete.",
        T,
        "dagster_run_timeout",
    ),
    (
        "Canceling due to exceeding maximum runtime (3600 seconds)",
        T,
        "dagster_run_timeout",
    ),
    (
        'connection to server at "db.internal" (10.0.0.5), port 5432 failed: timeout expired',
        T,
        "timed_out",
    ),
    (
        "Runtime Error\n  IO Error: Connection error for HTTP GET to "
        "'https://bucket.s3.amazonaws.com/raw/orders.parquet': Connection timed out",
        T,
        "timed_out",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  server closed the connection unexpectedly\n"
        "  \tThis probably means the server terminated abnormally\n"
        "  \tbefore or while processing the request.",
        T,
        "server_closed_connection",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  terminating connection due to administrator command",
        T,
        "server_closed_connection",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n  connection reset by peer",
        T,
        "connection_reset",
    ),
    (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  SSL SYSCALL error: EOF detected",
        T,
        "ssl_syscall_error",
    ),
    (
        "Database Error\n  could not connect to server: Connection refused\n"
        '  \tIs the server running on host "db.internal" (10.0.0.5) and accepting\n'
        "  \tTCP/IP connections on port 5432?",
        T,
        "connection_refused",
    ),
    (
        'Database Error\n  connection to server at "localhost" (127.0.0.1), port 5432 failed: '
        "Connection refused",
        T,
        "connection_refused",
    ),
    (
        "Database Error\n  FATAL:  sorry, too many clients already",
        T,
        "connection_slots_exhausted",
    ),
    (
        "Database Error\n  FATAL:  remaining connection slots are reserved for non-replication "
        "superuser connections",
        T,
        "connection_slots_exhausted",
    ),
    (
        "An error occurred (SlowDown) when calling the PutObject operation: Please reduce your "
        "request rate.",
        T,
        "rate_limited",
    ),
    (
        "An error occurred (Throttling) when calling the AssumeRole operation: Rate exceeded",
        T,
        "rate_limited",
    ),
    (
        "Run execution process for 3f9a1c2e-5b7d-4e21-9a0c-1d2e3f4a5b6c unexpectedly exited "
        "with code 1.",
        T,
        "run_worker_died",
    ),
    (
        "Detected run worker status WorkerStatus.FAILED: 'container exited'. Marking run "
        "3f9a1c2e as failed.",
        T,
        "run_worker_died",
    ),
    ("dbt process was killed by signal 9", T, "killed_by_signal"),
    (
        "Runtime Error in model events (models/marts/events.sql)\n"
        "  Out of Memory Error: could not allocate block of size 256.0 KiB (12.0 GiB/12.0 GiB "
        "used)",
        T,
        "out_of_memory",
    ),
]


def _example_id(example: tuple[str, ErrorKind, str]) -> str:
    return example[2]


@pytest.mark.parametrize(("message", "kind", "pattern"), EXAMPLES, ids=_example_id)
def test_real_messages_classify_as_their_kind(message: str, kind: ErrorKind, pattern: str) -> None:
    verdict = classify(message, default_patterns())
    assert (verdict.kind, verdict.pattern) == (kind, pattern)


def test_every_shipped_pattern_has_at_least_one_example() -> None:
    shipped = {p.name for p in default_patterns()}
    assert shipped - {pattern for _, _, pattern in EXAMPLES} == set()


def test_the_injected_faults_classify_as_the_project_promises() -> None:
    transient = "connection reset by peer (injected transient fault in model X)"
    permanent = "permission denied for table X (injected permanent fault)"
    assert classify(transient, default_patterns()).kind is ErrorKind.TRANSIENT
    assert classify(permanent, default_patterns()).kind is ErrorKind.DETERMINISTIC


def test_an_injected_fault_keeps_its_kind_when_raised_as_a_compilation_error() -> None:
    message = (
        "Compilation Error in model x (models/x.sql)\n"
        "  connection reset by peer (injected transient fault in model x)"
    )
    assert classify(message, default_patterns()).kind is ErrorKind.TRANSIENT


def test_duckdb_invalid_input_error_alone_is_unknown() -> None:
    # error('...') in DuckDB raises "Invalid Input Error"; the wrapper says nothing about the cause.
    message = (
        "Runtime Error in model x (models/x.sql)\n  Invalid Input Error: something odd happened"
    )
    assert classify(message, default_patterns()).kind is ErrorKind.UNKNOWN


def test_a_message_matching_nothing_is_unknown_with_no_pattern() -> None:
    verdict = classify("Runtime Error in model x (models/x.sql)\n  Kaboom", default_patterns())
    assert verdict == Classification(
        ErrorKind.UNKNOWN, None, "Runtime Error in model x (models/x.sql) Kaboom"
    )


def test_a_transient_phrase_quoted_as_bad_data_stays_deterministic() -> None:
    # Regression guard for the precedence rule: deterministic patterns come before generic
    # transient phrases, because bad-data errors quote arbitrary values.
    message = (
        "Runtime Error in model stg_events (models/staging/stg_events.sql)\n"
        "  Conversion Error: Could not convert string 'connection timed out' to INT32"
    )
    assert classify(message, default_patterns()).pattern == "conversion_error"


def test_matching_ignores_case() -> None:
    verdict = classify("CONNECTION RESET BY PEER", default_patterns())
    assert verdict.pattern == "connection_reset"


def test_the_excerpt_is_the_line_that_matched() -> None:
    message = (
        "Database Error in model orders (models/marts/orders.sql)\n"
        "  permission denied for schema marts\n"
        "  compiled code at target/run/shop/models/marts/orders.sql"
    )
    verdict = classify(message, default_patterns())
    assert verdict.message_excerpt == "permission denied for schema marts"


def test_the_excerpt_is_bounded() -> None:
    verdict = classify("x" * 10_000, default_patterns())
    assert len(verdict.message_excerpt) == EXCERPT_MAX_CHARS


def test_patterns_for_another_adapter_are_skipped() -> None:
    message = "deadlock detected"
    assert classify(message, default_patterns(), adapter="postgres").kind is ErrorKind.TRANSIENT
    assert classify(message, default_patterns(), adapter="duckdb").kind is ErrorKind.UNKNOWN


def test_patterns_for_any_adapter_apply_to_every_adapter() -> None:
    verdict = classify("Compilation Error in model x", default_patterns(), adapter="snowflake")
    assert verdict.kind is ErrorKind.DETERMINISTIC


def test_the_first_matching_pattern_in_file_order_wins() -> None:
    patterns = load_patterns(
        json.dumps(
            {
                "version": 1,
                "patterns": [
                    _entry("first", "transient", "boom"),
                    _entry("second", "deterministic", "boom"),
                ],
            }
        ),
        source="test.json",
    )
    assert classify("boom", patterns).pattern == "first"


def test_every_shipped_pattern_says_why() -> None:
    assert all(len(p.why) > 20 for p in default_patterns())


# classify_many


def test_one_deterministic_message_makes_the_run_deterministic() -> None:
    verdict = classify_many(
        ["connection reset by peer", "Compilation Error in model x", "Step failed"],
        default_patterns(),
    )
    assert (verdict.kind, verdict.pattern) == (ErrorKind.DETERMINISTIC, "dbt_compilation_error")


def test_transient_messages_next_to_unknown_wrappers_make_the_run_transient() -> None:
    verdict = classify_many(
        [
            'Execution of step "dbt_assets" failed.',
            "Database Error in model x (models/x.sql)\n  SSL SYSCALL error: EOF detected",
        ],
        default_patterns(),
    )
    assert (verdict.kind, verdict.pattern) == (ErrorKind.TRANSIENT, "ssl_syscall_error")


def test_only_unknown_messages_make_the_run_unknown() -> None:
    verdict = classify_many(["Step failed", "Kaboom"], default_patterns())
    assert verdict == Classification(ErrorKind.UNKNOWN, None, "Step failed")


def test_no_messages_at_all_is_unknown() -> None:
    assert classify_many([], default_patterns()) == Classification(ErrorKind.UNKNOWN, None, "")


# load_patterns validation


def _entry(name: str, kind: str, regex: str, **overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": name,
        "kind": kind,
        "regex": regex,
        "adapters": ["any"],
        "why": "because",
    }
    entry.update(overrides)
    return entry


def _load(*entries: dict[str, object]) -> None:
    load_patterns(json.dumps({"version": 1, "patterns": list(entries)}), source="mine.json")


def test_invalid_json_names_the_source() -> None:
    with pytest.raises(ConfigurationError, match=r"mine\.json: not valid JSON"):
        load_patterns("{not json", source="mine.json")


def test_an_unsupported_version_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="version 2 is not supported"):
        load_patterns('{"version": 2, "patterns": []}', source="mine.json")


def test_a_regex_that_does_not_compile_names_the_entry() -> None:
    with pytest.raises(ConfigurationError, match=r"mine\.json: pattern #0 \('broken'\).*compile"):
        _load(_entry("broken", "transient", "(unclosed"))


def test_a_kind_other_than_transient_or_deterministic_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"pattern #0 \('odd'\): 'kind' is 'unknown'"):
        _load(_entry("odd", "unknown", "x"))


def test_a_regex_matching_the_empty_string_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="matches the empty string"):
        _load(_entry("greedy", "transient", "x|"))


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"pattern #1 \('same'\): duplicate name"):
        _load(_entry("same", "transient", "a"), _entry("same", "transient", "b"))


def test_a_misspelt_key_is_rejected() -> None:
    entry = _entry("typo", "transient", "a")
    entry["regexp"] = entry.pop("regex")
    with pytest.raises(ConfigurationError, match=r"missing \['regex'\], unknown \['regexp'\]"):
        _load(entry)


def test_an_empty_adapter_list_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="'adapters' must be a non-empty list"):
        _load(_entry("nowhere", "transient", "a", adapters=[]))


def test_an_entry_without_a_why_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="'why' must say why"):
        _load(_entry("silent", "transient", "a", why=" "))


def test_top_level_comment_keys_are_allowed() -> None:
    text = json.dumps({"version": 1, "_comment": "hi", "patterns": [_entry("a", "transient", "a")]})
    assert [p.name for p in load_patterns(text, source="mine.json")] == ["a"]
