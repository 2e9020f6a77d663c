"""The console's pages (GET): overview, events, one event, dead letters, one customer, login."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from stripe_ingest.cli import store
from stripe_ingest.console import queries
from stripe_ingest.console.auth import safe_next
from stripe_ingest.console.web import problem, render, settings_of

MAX_FILTER_CHARS = 255


def _page(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, min(int(raw), 1_000_000)) if raw.isdigit() else 1


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value[:MAX_FILTER_CHARS] or None


def overview(request: Request) -> Response:
    return render(request, "overview.html", queries.overview(settings_of(request)))


def events(request: Request) -> Response:
    status = _text(request, "status")
    if status is not None and status not in store.STATUSES:
        return problem(request, 400, f"status must be one of {', '.join(store.STATUSES)}")
    flt = store.Filter(
        status=status, type=_text(request, "type"), customer=_text(request, "customer")
    )
    found = queries.events(settings_of(request), flt, _page(request))
    return render(request, "events.html", {"filter": flt, "statuses": store.STATUSES, **found})


def event(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    found = queries.event(settings_of(request), event_id)
    if found is None:
        return problem(request, 404, f"unknown event id: {event_id}")
    return render(request, "event.html", found)


def dead_letters(request: Request) -> Response:
    found = queries.dead_letters(settings_of(request), _text(request, "type"), _page(request))
    return render(request, "dead_letters.html", found)


def customer(request: Request) -> Response:
    customer_id = request.path_params["customer_id"]
    found = queries.customer(settings_of(request), customer_id, _page(request))
    if found is None:
        return problem(request, 404, f"unknown customer: {customer_id} (no mirror rows, no events)")
    return render(request, "customer.html", found)


def find_customer(request: Request) -> Response:
    """The overview's search box: /customers?id=cus_... goes to that customer's page."""
    customer_id = _text(request, "id")
    if customer_id is None:
        return problem(request, 400, "give a customer id (cus_...)")
    return RedirectResponse(request.url_for("customer", customer_id=customer_id), 303)


def login(request: Request) -> Response:
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})


def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")
