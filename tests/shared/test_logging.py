from __future__ import annotations

import json

import psycopg
import pytest
import structlog

from shared.errors import error_line
from shared.logging import configure_logging, log_ids, redact
from shared.settings import Settings


def test_redact_masks_emails_and_stripe_secrets() -> None:
    text = "mail amitree.apu@gmail.com with whsec_abcdef123456 and sk_test_abcdefghijkl"
    masked = redact(text)
    assert "amitree.apu@gmail.com" not in masked
    assert "whsec_abcdef123456" not in masked
    assert "sk_test_abcdefghijkl" not in masked


def test_log_lines_are_json_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings.from_env(environ={"LOG_LEVEL": "info"}, env_file=None))
    try:
        log = structlog.get_logger("test")
        log.info("webhook.stored", event_id="evt_1", secret="whsec_zzzzzzzz", note="x@y.io")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
    finally:
        structlog.reset_defaults()
    assert record["event"] == "webhook.stored"
    assert record["event_id"] == "evt_1"
    assert record["secret"] == "***"
    assert "x@y.io" not in line


def test_lines_listing_events_stay_under_pipe_buf(capsys: pytest.CaptureFixture[str]) -> None:
    """A pipe shared by several worker processes keeps each line whole up to 4096 bytes."""
    configure_logging(Settings.from_env(environ={"LOG_LEVEL": "info"}, env_file=None))
    ids = [f"evt_1Nq{n:025d}" for n in range(150)]  # as long as Stripe's ids get
    try:
        log_ids(structlog.get_logger("test"), "events.finished", ids)
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        structlog.reset_defaults()
    records = [json.loads(line) for line in lines]
    assert [r["count"] for r in records] == [64, 64, 22]
    assert [i for r in records for i in r["event_ids"]] == ids
    assert max(len(line.encode()) + 1 for line in lines) < 4096


def test_database_error_details_never_reach_a_line(database_url: str) -> None:
    """PostgreSQL quotes the failing row (DETAIL), the JSON around an error (CONTEXT) and some
    values in the primary message: a log line or an error answer keeps none of them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a text CHECK (a <> 'card 4242 x@y.io'), j jsonb)")
        errors = []
        for query, params in [
            ("INSERT INTO t (a) VALUES (%s)", ("card 4242 x@y.io",)),
            ("INSERT INTO t (j) VALUES (%s::jsonb)", ('{"last4": "4242", "x": "\\u0000"}',)),
            ("SELECT %s::int", ("4242abc",)),
        ]:
            with pytest.raises(psycopg.Error) as excinfo:
                conn.execute(query, params)
            errors.append(excinfo.value)

    assert all("4242" in str(e) for e in errors)  # what the driver says, unredacted
    lines = [error_line(e, with_type=False) for e in errors]
    assert lines[0].startswith('SQLSTATE 23514: new row for relation "t" violates check')
    assert lines[1].startswith("SQLSTATE 22P05: ")
    assert lines[2] == 'SQLSTATE 22P02: invalid input syntax for type integer: "***"'
    assert all("4242" not in line for line in lines)
    # The net under tracebacks and other free text: DETAIL and CONTEXT are withheld.
    assert all("4242" not in redact(str(e)) for e in errors[:2])
