from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import pytest

from shared.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, Settings, SettingsError
from tests.procs import child_env, run_worker


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env(environ={}, env_file=None)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.endswith("/stripe_ingest")
    assert settings.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert settings.webhook_tolerance == 300
    assert settings.max_body_bytes == 1_048_576
    assert settings.port == 8000
    assert settings.webhook_secrets == ()


OLD = "whsec_old_0123456789abcdef"
NEW = "whsec_new_0123456789abcdef"


def test_rotation_secrets_are_comma_separated() -> None:
    settings = Settings.from_env(environ={"STRIPE_WEBHOOK_SECRET": f"{OLD}, {NEW}"}, env_file=None)
    assert settings.webhook_secrets == (OLD, NEW)


def test_web_needs_a_secret_and_says_so_in_one_line() -> None:
    settings = Settings.from_env(environ={}, env_file=None)
    with pytest.raises(SettingsError) as excinfo:
        settings.require_webhook_secrets()
    assert "STRIPE_WEBHOOK_SECRET" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRIPE_WEBHOOK_TOLERANCE", "soon"),
        ("STRIPE_WEBHOOK_TOLERANCE", "0"),
        ("MAX_BODY_BYTES", "-1"),
        ("WORKER_MAX_RETRIES", "0"),
        ("WORKER_MIN_BACKOFF_MS", "5000"),
        ("STRIPE_WEBHOOK_SECRET", "not-a-secret"),
        ("SWEEPER_LEASE_SECONDS", "x"),
        ("WEBHOOK_READ_TIMEOUT_SECONDS", "0"),
        ("WEBHOOK_READ_TIMEOUT_SECONDS", "nan"),
        ("WEB_KEEP_ALIVE_SECONDS", "0"),
        ("WEB_MAX_CONCURRENCY", "0"),
        ("STRIPE_LIVEMODE", "yes"),
    ],
)
def test_malformed_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ={name: value, "WORKER_MAX_BACKOFF_MS": "1000"}, env_file=None)
    assert name.split("_")[0] in str(excinfo.value)


def test_the_environment_overrides_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PORT=9000\nREDIS_URL=redis://127.0.0.1:6379/3\n")
    settings = Settings.from_env(environ={"PORT": "9100"}, env_file=dotenv)
    assert settings.port == 9100
    assert settings.redis_url == "redis://127.0.0.1:6379/3"


def test_settings_keep_only_what_they_parsed() -> None:
    settings = Settings.from_env(
        environ={"PORT": "9100", "AWS_SECRET_ACCESS_KEY": "hunter2-secret"}, env_file=None
    )
    assert "hunter2-secret" not in repr(asdict(settings))
    assert settings == Settings(port=9100)


def test_a_malformed_number_names_the_variable_and_the_value() -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ={"WORKER_THREADS": "many"}, env_file=None)
    assert str(excinfo.value) == "WORKER_THREADS must be a whole number, got 'many'"
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ={"SWEEPER_LEASE_SECONDS": "soon"}, env_file=None)
    assert str(excinfo.value) == "SWEEPER_LEASE_SECONDS must be a number, got 'soon'"


@pytest.mark.parametrize(
    "secrets",
    [
        "whsec_",  # the public prefix: anyone can sign with it
        f"whsec_,{NEW}",  # a real secret beside it does not make it safe
        f"{NEW},whsec_123456789012345",  # 15 characters after the prefix
        "sk_test_0123456789abcdefghij",
    ],
)
def test_a_secret_that_is_not_whsec_and_16_more_characters_is_refused(secrets: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ={"STRIPE_WEBHOOK_SECRET": secrets}, env_file=None)
    message = str(excinfo.value)
    assert "STRIPE_WEBHOOK_SECRET" in message
    assert "16" in message
    assert "0123456789" not in message  # never the secret itself
    assert "\n" not in message


def test_a_secret_of_whsec_and_16_characters_is_accepted() -> None:
    secret = "whsec_" + "a" * 16
    settings = Settings.from_env(environ={"STRIPE_WEBHOOK_SECRET": secret}, env_file=None)
    assert settings.webhook_secrets == (secret,)


@pytest.mark.parametrize("tolerance", ["0", "-1", "3601", "99999999999", "9" * 400, "9" * 5000])
def test_a_tolerance_outside_1_to_3600_seconds_is_refused_in_one_short_line(
    tolerance: str,
) -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ={"STRIPE_WEBHOOK_TOLERANCE": tolerance}, env_file=None)
    message = str(excinfo.value)
    assert "STRIPE_WEBHOOK_TOLERANCE" in message
    assert "\n" not in message
    assert len(message) < 200


@pytest.mark.parametrize("tolerance", ["1", "300", "3600"])
def test_a_tolerance_from_1_to_3600_seconds_is_accepted(tolerance: str) -> None:
    settings = Settings.from_env(environ={"STRIPE_WEBHOOK_TOLERANCE": tolerance}, env_file=None)
    assert settings.webhook_tolerance == int(tolerance)


def test_worker_and_cli_settings_need_no_webhook_secret() -> None:
    settings = Settings.from_env(environ={"STRIPE_API_KEY": "sk_test_x"}, env_file=None)
    assert settings.webhook_secrets == ()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"STRIPE_LIVEMODE": "true"}, True),
        ({"STRIPE_LIVEMODE": "False"}, False),
        ({"STRIPE_API_KEY": "sk_live_abc"}, True),
        ({"STRIPE_API_KEY": "rk_live_abc"}, True),
        ({"STRIPE_API_KEY": "sk_test_abc"}, False),
        ({"STRIPE_API_KEY": "rk_test_abc"}, False),
        ({"STRIPE_API_KEY": "sk_live_abc", "STRIPE_LIVEMODE": "false"}, False),
    ],
)
def test_the_deployment_mode_is_stripe_livemode_else_the_api_keys(
    environ: dict[str, str], expected: bool | None
) -> None:
    assert Settings.from_env(environ=environ, env_file=None).expected_livemode is expected


def test_stripe_livemode_is_true_or_false() -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ={"STRIPE_LIVEMODE": "yes"}, env_file=None)
    assert "STRIPE_LIVEMODE" in str(excinfo.value)


@pytest.mark.parametrize(
    ("livemode", "key"),
    [
        ("true", "sk_test_0123456789abcdef"),
        ("false", "sk_live_0123456789abcdef"),
        ("false", "rk_live_0123456789abcdef"),
    ],
)
def test_a_worker_with_an_api_key_of_the_other_mode_refuses_to_start(
    env: dict[str, str], livemode: str, key: str
) -> None:
    """`python -m worker`, the real process: exit 2 with one line, never the key."""
    with tempfile.TemporaryDirectory() as workdir:
        result = subprocess.run(
            [sys.executable, "-m", "worker"],
            env=child_env({**env, "STRIPE_LIVEMODE": livemode, "STRIPE_API_KEY": key}),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "STRIPE_API_KEY" in lines[0]
    assert "STRIPE_LIVEMODE" in lines[0]
    assert "0123456789abcdef" not in result.stderr


def test_a_worker_with_an_api_key_of_its_mode_starts(env: dict[str, str]) -> None:
    live = {**env, "STRIPE_LIVEMODE": "true", "STRIPE_API_KEY": "rk_live_0123456789abcdef"}
    with run_worker(live) as worker:
        assert worker.alive()
