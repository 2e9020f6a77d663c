"""The one settings object, built from the environment (and an optional `.env`).

Nothing else in the code base reads `os.environ`: build a `Settings` once at the edge of a
process and pass it in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/stripe_ingest"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Verification that these would weaken stops every process at start (CONTRACT.md).
MIN_SECRET_CHARS = 16
MIN_TOLERANCE_S, MAX_TOLERANCE_S = 1, 3600


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line meant for an operator."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    # Dramatiq's key prefix in Redis; tests give each run its own.
    redis_namespace: str = "dramatiq"
    webhook_secrets: tuple[str, ...] = ()
    webhook_tolerance: int = 300
    stripe_api_key: str | None = None
    # STRIPE_LIVEMODE: None (unset) takes the mode of stripe_api_key; see expected_livemode.
    stripe_livemode: bool | None = None
    stripe_api_base: str | None = None
    max_body_bytes: int = 1_048_576
    port: int = 8000
    # The web process's limits (ingest/__main__.py): a request head or body not received within
    # this many seconds gets 408; idle keep-alive connections close after web_keep_alive_seconds;
    # over web_max_concurrency connections or running requests, a request gets 503.
    webhook_read_timeout_seconds: float = 30.0
    web_keep_alive_seconds: int = 5
    web_max_concurrency: int = 1000
    # Failed attempts before an event is dead-lettered: with the default backoff, about
    # 9 to 19 minutes of retries, long enough to ride out a short outage of what handlers call.
    worker_max_retries: int = 12
    worker_min_backoff_ms: int = 1_000
    worker_max_backoff_ms: int = 300_000
    # How long a pending event may sit unfinished before the sweeper enqueues it again.
    sweeper_lease_seconds: float = 60.0
    sweeper_interval_seconds: float = 15.0
    worker_processes: int = 2
    worker_threads: int = 8
    # Port of the worker's Prometheus exposition (Dramatiq's middleware and ours).
    worker_metrics_port: int = 9191
    # Port of the sweeper's Prometheus exposition; 0 turns it off.
    sweeper_metrics_port: int = 9192
    # The receiver groups concurrent inserts: at most this many rows, waiting at most this long.
    intake_batch_max: int = 256
    intake_batch_window_ms: float = 2.0
    # Bulk replays above this many events ask for confirmation unless --yes.
    replay_confirm_threshold: int = 100
    grace_period_days: int = 3
    smtp_url: str | None = None
    # Modules imported by the worker after the billing mirror: users' own handlers.
    user_handlers: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "json"
    extra: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | Path | None = ".env",
    ) -> Settings:
        """Read settings from `environ` (default: the process environment).

        Values in `env_file`, when it exists, are defaults that the environment overrides.
        """
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                return None
            return value.strip()

        kwargs: dict[str, Any] = {}
        for name, attr in (
            ("DATABASE_URL", "database_url"),
            ("REDIS_URL", "redis_url"),
            ("REDIS_NAMESPACE", "redis_namespace"),
            ("STRIPE_API_KEY", "stripe_api_key"),
            ("STRIPE_API_BASE", "stripe_api_base"),
            ("SMTP_URL", "smtp_url"),
            ("LOG_LEVEL", "log_level"),
            ("LOG_FORMAT", "log_format"),
        ):
            value = get(name)
            if value is not None:
                kwargs[attr] = value
        for name, attr in (
            ("STRIPE_WEBHOOK_TOLERANCE", "webhook_tolerance"),
            ("MAX_BODY_BYTES", "max_body_bytes"),
            ("PORT", "port"),
            ("WORKER_MAX_RETRIES", "worker_max_retries"),
            ("WORKER_MIN_BACKOFF_MS", "worker_min_backoff_ms"),
            ("WORKER_MAX_BACKOFF_MS", "worker_max_backoff_ms"),
            ("GRACE_PERIOD_DAYS", "grace_period_days"),
            ("WORKER_PROCESSES", "worker_processes"),
            ("WORKER_THREADS", "worker_threads"),
            ("WORKER_METRICS_PORT", "worker_metrics_port"),
            ("SWEEPER_METRICS_PORT", "sweeper_metrics_port"),
            ("INTAKE_BATCH_MAX", "intake_batch_max"),
            ("REPLAY_CONFIRM_THRESHOLD", "replay_confirm_threshold"),
            ("WEB_KEEP_ALIVE_SECONDS", "web_keep_alive_seconds"),
            ("WEB_MAX_CONCURRENCY", "web_max_concurrency"),
        ):
            value = get(name)
            if value is not None:
                kwargs[attr] = _int(name, value)
        for name, attr in (
            ("SWEEPER_LEASE_SECONDS", "sweeper_lease_seconds"),
            ("SWEEPER_INTERVAL_SECONDS", "sweeper_interval_seconds"),
            ("INTAKE_BATCH_WINDOW_MS", "intake_batch_window_ms"),
            ("WEBHOOK_READ_TIMEOUT_SECONDS", "webhook_read_timeout_seconds"),
        ):
            value = get(name)
            if value is not None:
                kwargs[attr] = _float(name, value)
        livemode = get("STRIPE_LIVEMODE")
        if livemode is not None:
            kwargs["stripe_livemode"] = _bool("STRIPE_LIVEMODE", livemode)
        secrets = get("STRIPE_WEBHOOK_SECRET")
        if secrets is not None:
            kwargs["webhook_secrets"] = _csv(secrets)
        handlers = get("USER_HANDLERS")
        if handlers is not None:
            kwargs["user_handlers"] = _csv(handlers)
        settings = cls(**kwargs, extra=dict(env))
        settings.validate()
        return settings

    def validate(self) -> None:
        if not MIN_TOLERANCE_S <= self.webhook_tolerance <= MAX_TOLERANCE_S:
            raise SettingsError(
                f"STRIPE_WEBHOOK_TOLERANCE must be {MIN_TOLERANCE_S} to {MAX_TOLERANCE_S} seconds"
            )
        if self.max_body_bytes <= 0:
            raise SettingsError("MAX_BODY_BYTES must be positive")
        if not 0 < self.webhook_read_timeout_seconds <= 3600:
            raise SettingsError("WEBHOOK_READ_TIMEOUT_SECONDS must be more than 0 and at most 3600")
        if self.web_keep_alive_seconds < 1 or self.web_max_concurrency < 1:
            raise SettingsError("WEB_KEEP_ALIVE_SECONDS and WEB_MAX_CONCURRENCY must be at least 1")
        if self.worker_max_retries < 1:
            raise SettingsError("WORKER_MAX_RETRIES must be at least 1")
        if not 0 < self.worker_min_backoff_ms <= self.worker_max_backoff_ms:
            raise SettingsError(
                "WORKER_MIN_BACKOFF_MS must be positive and at most WORKER_MAX_BACKOFF_MS"
            )
        if self.sweeper_lease_seconds <= 0 or self.sweeper_interval_seconds <= 0:
            raise SettingsError("SWEEPER_LEASE_SECONDS and SWEEPER_INTERVAL_SECONDS must be > 0")
        for secret in self.webhook_secrets:
            if not secret.startswith("whsec_") or len(secret) < len("whsec_") + MIN_SECRET_CHARS:
                raise SettingsError(
                    "STRIPE_WEBHOOK_SECRET entries must start with whsec_ and have at least "
                    f"{MIN_SECRET_CHARS} more characters"
                )

    @property
    def expected_livemode(self) -> bool | None:
        """The mode events must have: STRIPE_LIVEMODE, else STRIPE_API_KEY's, else None (any)."""
        if self.stripe_livemode is not None:
            return self.stripe_livemode
        if self.stripe_api_key is not None:
            return _is_live_key(self.stripe_api_key)
        return None

    def check_api_key_mode(self) -> None:
        """Refuse an API key of the other mode than STRIPE_LIVEMODE (the worker calls it)."""
        key, livemode = self.stripe_api_key, self.stripe_livemode
        if key is not None and livemode is not None and _is_live_key(key) != livemode:
            kind = "live" if _is_live_key(key) else "test"
            raise SettingsError(
                f"STRIPE_API_KEY is a {kind}-mode key but STRIPE_LIVEMODE is "
                f"{str(livemode).lower()}: give a key of the deployment's mode"
            )

    def require_webhook_secrets(self) -> tuple[str, ...]:
        if not self.webhook_secrets:
            raise SettingsError(
                "STRIPE_WEBHOOK_SECRET is not set: give the endpoint's signing secret "
                "(whsec_..., comma-separated for rotation)"
            )
        return self.webhook_secrets

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {_shown(value)}") from None


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {_shown(value)}") from None


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise SettingsError(f"{name} must be true or false, got {_shown(value)}")
    return lowered == "true"


def _is_live_key(key: str) -> bool:
    return key.startswith(("sk_live_", "rk_live_"))


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
