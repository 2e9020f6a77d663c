"""Misconfiguration and services that do not answer give one line, never a traceback."""

from __future__ import annotations

import pytest

from tests.cli.clitools import run_cli


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "banana", "DATABASE_URL is neither a PostgreSQL URL"),
        ("DATABASE_URL", "postgresql://u:hunter2@[::1", "DATABASE_URL is neither"),
        ("REDIS_URL", "banana", "REDIS_URL is not a Redis URL"),
        ("REDIS_URL", "redis://127.0.0.1:port/0", "REDIS_URL is not a Redis URL"),
    ],
)
@pytest.mark.parametrize("args", [("stats",), ("dead-letters", "summary"), ("replay", "evt_1")])
def test_a_malformed_url_exits_2_with_one_line_that_does_not_quote_it(
    env: dict[str, str], variable: str, value: str, message: str, args: tuple[str, ...]
) -> None:
    result = run_cli({**env, variable: value}, *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "hunter2" not in result.stderr and "banana" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("customers", "show", "cus_1"),
        ("dead-letters", "resolve", "evt_1", "--reason", "x"),
        ("dead-letters", "summary"),
        ("replays", "list"),
    ],
)
def test_the_new_commands_say_in_one_line_that_the_database_is_away(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = run_cli({**env, "DATABASE_URL": "postgresql://127.0.0.1:1/stripe_ingest"}, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database unavailable"), result.stderr
