from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from shared.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, Settings, SettingsError


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env(environ={}, env_file=None)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.endswith("/stripe_ingest")
    assert settings.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert settings.webhook_tolerance == 300
    assert settings.max_body_bytes == 1_048_576
    assert settings.port == 8000
    assert settings.webhook_secrets == ()


def test_rotation_secrets_are_comma_separated() -> None:
    settings = Settings.from_env(
        environ={"STRIPE_WEBHOOK_SECRET": "whsec_old, whsec_new"}, env_file=None
    )
    assert settings.webhook_secrets == ("whsec_old", "whsec_new")


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
