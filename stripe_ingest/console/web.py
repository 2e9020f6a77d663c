"""What every page and action shares: rendering, forms, CSRF, notices after a redirect."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from stripe_ingest.console.auth import Auth, Session

FORM_BYTES = 64 * 1024
# After an action the browser is sent back with a notice code: the text shown is fixed here
# (nothing from the URL is shown but the count).
NOTICES = {
    "replayed": "Replayed: the event is pending again and enqueued.",
    "resolved": "Resolved: the dead letter is closed; the event stays dead.",
    "bulk-replayed": "Replayed {n} dead event(s).",
    "bulk-resolved": "Resolved {n} dead letter(s).",
    "already-resolved": "That dead letter was resolved already; nothing changed.",
}


def settings_of(request: Request) -> Any:
    return request.app.state.settings


def auth_of(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def operator_of(request: Request) -> str:
    return str(request.state.operator)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    session: Session | None = getattr(request.state, "session", None)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    count = request.query_params.get("n", "")
    full = {
        "operator": getattr(request.state, "operator", None),
        "csrf": auth_of(request).csrf_token(session) if session else "",
        "notice": notice.format(n=int(count) if count.isdigit() else "?") if notice else None,
        **(context or {}),
    }
    response: Response = request.app.state.templates.TemplateResponse(
        request, template, full, status_code=status
    )
    return response


def problem(request: Request, status: int, message: str) -> Response:
    """A page that says in one line what was wrong; nothing was changed."""
    return render(request, "problem.html", {"status": status, "message": message}, status)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (what the console's pages send), at most FORM_BYTES."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            raise HTTPException(413, "form too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form urlencoded")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as e:
        raise HTTPException(400, "unreadable form") from e
    return dict(pairs)


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """A cookie session's POST must carry its CSRF token; a bearer request has no cookie."""
    session: Session | None = getattr(request.state, "session", None)
    if session is not None and not auth_of(request).csrf_matches(session, form.get("csrf", "")):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")


def back(path: str, notice: str, **params: Any) -> Response:
    query = urlencode({"notice": notice, **params})
    return RedirectResponse(f"{path}?{query}", status_code=303)
