"""Parse a verified body into the row we store, and derive its ordering key.

Two kinds of events come in, signed the same way: snapshot events (`"object": "event"`, unix
`created`, the object in `data.object`) and thin event notifications (`"object":
"v2.core.event"`, ISO 8601 `created`, a `related_object` to fetch, optional `snapshot_event`
and `context`, the Connect account). Both are read as plain JSON: no Stripe objects are built.
"""

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
    kind: str = "snapshot"  # or "thin"
    # The named endpoint it came in on (`/webhooks/stripe/<name>`); None for `/webhooks/stripe`.
    endpoint: str | None = None
    # A thin event's snapshot twin (Stripe's `snapshot_event`).
    snapshot_event: str | None = None


THIN_OBJECT = "v2.core.event"


def parse_event(body: bytes | str, endpoint: str | None = None) -> EventRow:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise MalformedEvent("body is not JSON") from e
    return event_row(event, body if isinstance(body, str) else body.decode("utf-8"), endpoint)


def event_row(event: Any, payload: str, endpoint: str | None = None) -> EventRow:
    if not isinstance(event, dict):
        raise MalformedEvent("event is not a JSON object")
    if event.get("object") == THIN_OBJECT:
        return thin_row(event, payload, endpoint)
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
    _refuse_nul(event, payload)
    try:
        created_at = datetime.fromtimestamp(created, tz=UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise MalformedEvent("event has an impossible created timestamp") from e
    key = ordering_key(event)
    _check_lengths(event_id, key)
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
        endpoint=endpoint,
    )


def thin_row(event: dict[str, Any], payload: str, endpoint: str | None = None) -> EventRow:
    """A thin event notification: its related object names its ordering key (the object's id;
    Stripe's ids are unique across accounts), `context` its account."""
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    related = event.get("related_object")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("event has no id")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("event has no type")
    if not isinstance(related, dict):
        raise MalformedEvent("thin event has no related_object")
    related_id, url = _id_of(related.get("id")), related.get("url")
    if related_id is None and not (isinstance(url, str) and url):
        raise MalformedEvent("thin event's related_object has neither id nor url")
    created_at = _iso_time(created)
    _refuse_nul(event, payload)
    key = related_id or event_id  # a singleton related object (a url, no id) orders by event
    snapshot, context = event.get("snapshot_event"), event.get("context")
    snapshot_event = snapshot if isinstance(snapshot, str) and snapshot else None
    _check_lengths(event_id, key, snapshot_event or "")
    return EventRow(
        id=event_id,
        type=event_type,
        created=created_at,
        livemode=event.get("livemode") is True,
        api_version=None,  # thin payloads are unversioned
        account=context if isinstance(context, str) and context else None,
        ordering_key=key,
        payload=payload,
        kind="thin",
        endpoint=endpoint,
        snapshot_event=snapshot_event,
    )


def _iso_time(value: Any) -> datetime:
    """An ISO 8601 date and time with its offset (Stripe sends `2026-10-01T12:00:00.123Z`)."""
    if not isinstance(value, str) or "T" not in value:
        raise MalformedEvent("thin event has no ISO 8601 created time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise MalformedEvent("thin event has an impossible created time") from e
    if moment.tzinfo is None:
        raise MalformedEvent("thin event's created time has no offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError as e:
        raise MalformedEvent("thin event has an impossible created time") from e


def _refuse_nul(event: Any, payload: str) -> None:
    if "\\u0000" in payload and _has_nul(event):  # the text alone may be an escaped backslash
        # jsonb cannot hold NUL: refused here, before the database.
        raise MalformedEvent("event contains a NUL character")


def _check_lengths(*values: str) -> None:
    if any(len(v) > MAX_KEY_CHARS for v in values):
        raise MalformedEvent(f"event id or ordering key over {MAX_KEY_CHARS} characters")


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
