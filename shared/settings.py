"""The one settings object, built from the environment (and an optional `.env`).

Nothing else in the code base reads `os.environ`: build a `Settings` once at the edge of a
process and pass it in. Each field declares its variable, parser and one-line description with
`setting(...)`; parsing and the reference (`python -m shared.settings_doc`) both read that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from redis.connection import parse_url

from shared.errors import SettingsError

__all__ = ["Settings", "SettingsError"]

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/stripe_ingest"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Verification that these would weaken stops every process at start (CONTRACT.md).
MIN_SECRET_CHARS = 16
MIN_TOLERANCE_S, MAX_TOLERANCE_S = 1, 3600
# A family's member name is a path segment (`/webhooks/stripe/<name>`).
_MEMBER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
FAMILY_SUFFIX = "<NAME>"

T = TypeVar("T")
V = TypeVar("V")
Parser = Callable[[str, str], Any]


def text(name: str, value: str) -> str:
    return value


def whole_number(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {_shown(value)}") from None


def number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {_shown(value)}") from None


def boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise SettingsError(f"{name} must be true or false, got {_shown(value)}")
    return lowered == "true"


def _shown(value: str) -> str:
    """A value as an error message quotes it: a long one (a 400-digit number) cut short."""
    return repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"


# The messages of these two never quote the value: a URL may hold a password.
def postgres_dsn(name: str, value: str) -> str:
    try:
        conninfo_to_dict(value)
    except ProgrammingError:
        raise SettingsError(
            f"{name} is neither a PostgreSQL URL (postgresql://user:password@host:5432/dbname)"
            " nor a conninfo string"
        ) from None
    return value


def redis_address(name: str, value: str) -> str:
    try:
        parse_url(value)  # type: ignore[no-untyped-call]
    except ValueError:
        raise SettingsError(
            f"{name} is not a Redis URL (redis://host:6379/0, rediss://..., unix://...)"
        ) from None
    return value


def comma_separated(name: str, value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Var:
    """Where a setting comes from: its variable, how its value is read, what it means."""

    env: str
    parse: Parser
    doc: str
    # The default as the reference shows it, when the value itself would not say it.
    shown: str | None = None
    # A family of variables `PREFIX_<NAME>`: the field maps each lowercased name to its value.
    family: bool = False

    @property
    def prefix(self) -> str:
        return self.env.removesuffix(FAMILY_SUFFIX)


def setting(
    default: T, env: str, parse: Callable[[str, str], T], doc: str, *, shown: str | None = None
) -> T:
    """A `Settings` field read from the variable `env` (blank counts as unset)."""
    return field(default=default, metadata={"var": Var(env, parse, doc, shown)})


class Members(Mapping[str, V]):
    """A family's values by name: read-only and hashable, like every other setting."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, V] | None = None) -> None:
        self._items = dict(sorted((items or {}).items()))

    def __getitem__(self, name: str) -> V:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return f"Members({sorted(self._items)!r})"  # the names only: values may be secrets


def setting_family(
    env: str, parse: Callable[[str, str], T], doc: str, *, shown: str = "none"
) -> Mapping[str, T]:
    """A `Settings` field read from every variable `PREFIX_<NAME>` (`env` ends in `<NAME>`):
    each lowercased NAME with its parsed value; none set, it is empty."""
    if not env.endswith(FAMILY_SUFFIX):
        raise ValueError(f"a family's variable ends in {FAMILY_SUFFIX}")
    return field(default=Members(), metadata={"var": Var(env, parse, doc, shown, family=True)})


def _family(spec: Var, env: Mapping[str, str]) -> Members[Any]:
    members: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(spec.prefix) or not value.strip():
            continue
        if name == spec.prefix:
            raise SettingsError(f"{name} needs a name: {spec.env}")
        member = name.removeprefix(spec.prefix).lower()
        if not _MEMBER_NAME.fullmatch(member):
            raise SettingsError(
                f"{name}: the name after {spec.prefix} may hold only letters, digits, _ and -"
            )
        if member in members:
            raise SettingsError(f"{name} names {member!r} twice (names are not case-sensitive)")
        members[member] = spec.parse(name, value.strip())
    return Members(members)


def var_of(f: Any) -> Var:
    """The `Var` of one of `fields(Settings)`."""
    value: Var = f.metadata["var"]
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "DATABASE_URL", postgres_dsn, "PostgreSQL DSN."
    )
    redis_url: str = setting(
        DEFAULT_REDIS_URL, "REDIS_URL", redis_address, "Redis for the Dramatiq broker."
    )
    # Tests give each run its own.
    redis_namespace: str = setting(
        "dramatiq",
        "REDIS_NAMESPACE",
        text,
        "Dramatiq's key prefix in Redis; web, workers, sweeper and CLI must agree.",
    )
    webhook_secrets: tuple[str, ...] = setting(
        (),
        "STRIPE_WEBHOOK_SECRET",
        comma_separated,
        "The endpoint's signing secret(s), each `whsec_` and at least 16 more characters,"
        " comma-separated during rotation; `web` refuses to start without one, and every"
        " process with a malformed one.",
    )
    endpoint_secrets: Mapping[str, tuple[str, ...]] = setting_family(
        "STRIPE_WEBHOOK_SECRET_<NAME>",
        comma_separated,
        "The secret(s) of the named endpoint `POST /webhooks/stripe/<name>` (NAME lowercased:"
        " `STRIPE_WEBHOOK_SECRET_CONNECT` serves `/webhooks/stripe/connect`), one variable per"
        " endpoint, checked like `STRIPE_WEBHOOK_SECRET`; an endpoint takes only its own.",
    )
    webhook_tolerance: int = setting(
        300,
        "STRIPE_WEBHOOK_TOLERANCE",
        whole_number,
        "Seconds a signature's timestamp may be old or ahead (1 to 3600; outside that every"
        " process refuses to start).",
    )
    max_body_bytes: int = setting(
        1_048_576,
        "MAX_BODY_BYTES",
        whole_number,
        "Largest accepted webhook body, announced or streamed (413 above it).",
    )
    port: int = setting(8000, "PORT", whole_number, "The receiver's port (all interfaces).")
    stripe_livemode: bool | None = setting(
        None,
        "STRIPE_LIVEMODE",
        boolean,
        "`true` or `false`: events of the other mode get 400 `livemode_mismatch`, nothing stored;"
        " a worker with a `STRIPE_API_KEY` of the other mode refuses to start. Unset: the mode"
        " of `STRIPE_API_KEY` when set (`sk_live_`/`rk_live_` is live), else both accepted.",
        shown="unset",
    )
    webhook_read_timeout_seconds: float = setting(
        30.0,
        "WEBHOOK_READ_TIMEOUT_SECONDS",
        number,
        "A request head or body not received within this many seconds gets 408 (or its"
        " connection closed).",
    )
    web_keep_alive_seconds: int = setting(
        5, "WEB_KEEP_ALIVE_SECONDS", whole_number, "Idle keep-alive connections close after this."
    )
    web_max_concurrency: int = setting(
        1000,
        "WEB_MAX_CONCURRENCY",
        whole_number,
        "Connections or running requests the web process takes; past it a request gets 503.",
    )
    intake_batch_max: int = setting(
        256, "INTAKE_BATCH_MAX", whole_number, "Most rows per grouped INSERT of the receiver."
    )
    intake_batch_window_ms: float = setting(
        2.0,
        "INTAKE_BATCH_WINDOW_MS",
        number,
        "Longest a row waits for its batch while another flush is in flight.",
    )
    stripe_api_key: str | None = setting(
        None,
        "STRIPE_API_KEY",
        text,
        "Optional: the mirror re-reads subscriptions and invoices from Stripe, and `backfill`"
        " and `reconcile` work (a restricted key that reads Events is enough for `backfill`;"
        " `reconcile` reads customers, subscriptions and invoices).",
    )
    stripe_api_base: str | None = setting(
        None,
        "STRIPE_API_BASE",
        text,
        "Optional: another Stripe API base URL (tests, proxies).",
        shown="Stripe's (`https://api.stripe.com`)",
    )
    # With the default backoff, about 9 to 19 minutes of retries: long enough to ride out a
    # short outage of what handlers call.
    worker_max_retries: int = setting(
        12,
        "WORKER_MAX_RETRIES",
        whole_number,
        "Failed attempts before an event is dead-lettered (the 12th failure, by default).",
    )
    worker_min_backoff_ms: int = setting(
        1_000,
        "WORKER_MIN_BACKOFF_MS",
        whole_number,
        "Retry backoff after the first failure, before jitter; it doubles with each failure.",
    )
    worker_max_backoff_ms: int = setting(
        300_000, "WORKER_MAX_BACKOFF_MS", whole_number, "Cap of the retry backoff, before jitter."
    )
    worker_processes: int = setting(
        2, "WORKER_PROCESSES", whole_number, "Dramatiq worker processes per `worker` process."
    )
    worker_threads: int = setting(
        8,
        "WORKER_THREADS",
        whole_number,
        "Threads per worker process; each handles one message at a time (one key, or a round"
        " of many keys) with at most one PostgreSQL connection.",
    )
    worker_metrics_port: int = setting(
        9191,
        "WORKER_METRICS_PORT",
        whole_number,
        "Port of the workers' Prometheus exposition (Dramatiq's metrics and ours).",
    )
    sweeper_interval_seconds: float = setting(
        15.0, "SWEEPER_INTERVAL_SECONDS", number, "Time between sweeper passes."
    )
    sweeper_lease_seconds: float = setting(
        60.0,
        "SWEEPER_LEASE_SECONDS",
        number,
        "How long a pending, due event may go without a message before the sweeper sends one.",
    )
    sweeper_metrics_port: int = setting(
        9192,
        "SWEEPER_METRICS_PORT",
        whole_number,
        "Port of the sweeper's Prometheus exposition; `0` turns it off.",
    )
    # Loopback by default, like the console: the figures name event types and volumes.
    metrics_host: str = setting(
        "127.0.0.1",
        "METRICS_HOST",
        text,
        "Address the workers' and the sweeper's Prometheus expositions listen on; `0.0.0.0`"
        " (or the host's address) to let a Prometheus on another host scrape them.",
    )
    grace_period_days: int = setting(
        3,
        "GRACE_PERIOD_DAYS",
        whole_number,
        "Days of access after the first failed payment of a past_due subscription (stored with"
        " each failure: a change applies to failures recorded afterwards).",
    )
    smtp_url: str | None = setting(
        None,
        "SMTP_URL",
        text,
        "Send notifications by e-mail:"
        " `smtp://[user:password@]host[:port][?from=billing@example.com&starttls=true]`,"
        " or `smtps://...` for implicit TLS. Unset: notifications are logged.",
    )
    user_handlers: tuple[str, ...] = setting(
        (),
        "USER_HANDLERS",
        comma_separated,
        "Comma-separated modules the worker imports after the billing mirror; their `@handles`"
        " functions run after the mirror's, in the order given.",
    )
    replay_confirm_threshold: int = setting(
        100,
        "REPLAY_CONFIRM_THRESHOLD",
        whole_number,
        "Bulk replays and purges above this many events ask for confirmation unless `--yes`.",
    )
    console_token: str | None = setting(
        None,
        "CONSOLE_TOKEN",
        text,
        "The console's access token (at least 16 characters), sent as `Authorization: Bearer`"
        " or typed into its login form; `console` refuses to start without it.",
    )
    console_host: str = setting(
        "127.0.0.1",
        "CONSOLE_HOST",
        text,
        "Address the console listens on (the default: this machine only).",
    )
    console_port: int = setting(8001, "CONSOLE_PORT", whole_number, "The console's port.")
    log_level: str = setting(
        "info",
        "LOG_LEVEL",
        text,
        "A logging level name: `debug`, `info`, `warning`, `error` (an unknown name: `info`).",
    )
    log_format: str = setting(
        "json", "LOG_FORMAT", text, "`json` lines; any other value (e.g. `console`): plain lines."
    )

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
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            spec = var_of(f)
            if spec.family:
                kwargs[f.name] = _family(spec, env)
                continue
            value = env.get(spec.env)
            if value is not None and value.strip() != "":
                kwargs[f.name] = spec.parse(spec.env, value.strip())
        settings = cls(**kwargs)
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
        _check_secrets("STRIPE_WEBHOOK_SECRET", self.webhook_secrets)
        for name, secrets in self.endpoint_secrets.items():
            variable = f"STRIPE_WEBHOOK_SECRET_{name.upper()}"
            if not secrets:
                raise SettingsError(f"{variable} holds no secret")
            _check_secrets(variable, secrets)

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

    def require_console_token(self) -> str:
        token = self.console_token
        if not token:
            raise SettingsError(
                "CONSOLE_TOKEN is not set: give the console an access token"
                " (at least 16 characters, e.g. from `openssl rand -hex 32`)"
            )
        if len(token) < 16:
            raise SettingsError(f"CONSOLE_TOKEN must be at least 16 characters, not {len(token)}")
        return token

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _check_secrets(variable: str, secrets: tuple[str, ...]) -> None:
    for secret in secrets:
        if not secret.startswith("whsec_") or len(secret) < len("whsec_") + MIN_SECRET_CHARS:
            raise SettingsError(
                f"{variable} entries must start with whsec_ and have at least "
                f"{MIN_SECRET_CHARS} more characters"
            )


def _is_live_key(key: str) -> bool:
    return key.startswith(("sk_live_", "rk_live_"))
