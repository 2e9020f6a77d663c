"""Option types: WHEN (a point in time) and AGE (a duration); a bad value is a usage error."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """`90s`, `30m`, `2h`, `3d`, `1w`."""
    match = _RELATIVE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 90s, 30m, 2h, 3d or 1w")
    amount, unit = float(match.group(1)), match.group(2).lower()
    return timedelta(**{_UNITS[unit]: amount})


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """An ISO date or date-time (UTC when no offset is given), or a duration ago (`2h`)."""
    now = now or datetime.now(UTC)
    if _RELATIVE.match(value):
        return now - parse_age(value)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO date/time (2024-05-01, 2024-05-01T13:00:00Z) "
            "nor a duration ago (90s, 30m, 2h, 3d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class When(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Age(click.ParamType):  # type: ignore[type-arg]
    name = "AGE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            age = parse_age(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if age <= timedelta(0):
            self.fail("the age must be more than zero", param, ctx)
        return age


WHEN = When()
AGE = Age()
