"""Parse a verified body into the row we store, and derive its ordering key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


class MalformedEvent(ValueError):
    """Signed, but not a Stripe event."""


# Stripe's ids are far shorter; a longer id or ordering key is refused before the database
# (whose btree indexes cannot hold one of ~2.7 KB).
MAX_KEY_CHARS = 255


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    type: str
    created: datetime
    livemode: bool
    api_version: str | None
    account: str | None
    ordering_key: str
    payload: str  # the body as received, stored as jsonb


def parse_event(body: bytes | str) -> EventRow:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise MalformedEvent("body is not JSON") from e
    return event_row(event, body if isinstance(body, str) else body.decode("utf-8"))


def event_row(event: Any, payload: str) -> EventRow:
    if not isinstance(event, dict):
        raise MalformedEvent("event is not a JSON object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    data = event.get("data")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("event has no type")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise MalformedEvent("event has no created timestamp")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("event has no data.object")
    if "\\u0000" in payload and _has_nul(event):  # the text alone may be an escaped backslash
        # jsonb cannot hold NUL: refused here, before the database.
        raise MalformedEvent("event contains a NUL character")
    try:
        created_at = datetime.fromtimestamp(created, tz=UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise MalformedEvent("event has an impossible created timestamp") from e
    key = ordering_key(event)
    if len(event_id) > MAX_KEY_CHARS or len(key) > MAX_KEY_CHARS:
        raise MalformedEvent(f"event id or ordering key over {MAX_KEY_CHARS} characters")
    api_version = event.get("api_version")
    account = event.get("account")
    return EventRow(
        id=event_id,
        type=event_type,
        created=created_at,
        livemode=event.get("livemode") is True,
        api_version=api_version if isinstance(api_version, str) else None,
        account=account if isinstance(account, str) else None,
        ordering_key=key,
        payload=payload,
    )


def _has_nul(event: Any) -> bool:
    """Whether a string (or key) anywhere in the event holds NUL; without recursion, since
    orjson reads nestings deeper than Python's recursion limit."""
    stack = [event]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _id_of(value: Any) -> str | None:
    """Stripe fields hold an id, or the expanded object with an `id`."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        inner = value.get("id")
        if isinstance(inner, str) and inner:
            return inner
    return None


def ordering_key(event: dict[str, Any]) -> str:
    """The customer when the object names one (or is one); for disputes and refunds without a
    customer, the charge; otherwise the object's id, or the event's id when it has none."""
    obj = event["data"]["object"]
    customer = _id_of(obj.get("customer"))
    if customer:
        return customer
    kind = obj.get("object")
    if kind == "customer" and _id_of(obj.get("id")):
        return str(obj["id"])
    if kind in ("dispute", "refund"):
        charge = _id_of(obj.get("charge"))
        if charge:
            return charge
    return _id_of(obj.get("id")) or str(event["id"])
