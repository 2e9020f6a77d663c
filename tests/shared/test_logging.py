from __future__ import annotations

import json

import pytest
import structlog

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
