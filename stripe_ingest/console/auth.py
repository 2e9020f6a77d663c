"""Who may use the console: `CONSOLE_TOKEN` as a bearer header, or a signed session cookie set by
the login form. Cookie-authenticated POSTs carry a CSRF token derived from the session.

Sessions are signed with a key derived from the token, so changing the token ends every session.
Comparisons are constant-time, on bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "si_console"
SESSION_SECONDS = 12 * 3600
OPERATOR_CHARS = 64
DEFAULT_OPERATOR = "console"
PUBLIC = ("/login", "/healthz")
PUBLIC_PREFIX = "/static/"


@dataclass(frozen=True)
class Session:
    operator: str
    issued: int
    nonce: str


class Auth:
    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._key = hmac.new(self._token, b"stripe-ingest console session", hashlib.sha256).digest()

    def token_matches(self, given: bytes) -> bool:
        return hmac.compare_digest(given, self._token)

    def bearer_matches(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        # Header values arrive decoded as latin-1: encoding them back gives the bytes sent.
        given = value.strip().encode("latin-1", errors="replace")
        return scheme.lower() == "bearer" and self.token_matches(given)

    def _sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def new_session(self, operator: str) -> tuple[Session, str]:
        session = Session(operator, int(time.time()), secrets.token_hex(16))
        body = base64.urlsafe_b64encode(
            orjson.dumps({"op": session.operator, "iat": session.issued, "n": session.nonce})
        )
        return session, f"{body.decode()}.{self._sign(body)}"

    def read_session(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        expected = self._sign(body.encode())
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(body.encode()))
            session = Session(str(data["op"]), int(data["iat"]), str(data["n"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= time.time() - session.issued <= SESSION_SECONDS:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"csrf:" + session.nonce.encode())

    def csrf_matches(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())


def clean_operator(name: str) -> str:
    """The name an operator logs in with, as the audit records it."""
    text = " ".join("".join(c for c in name if c.isprintable()).split())[:OPERATOR_CHARS]
    return text or DEFAULT_OPERATOR


def _wants_html(conn: HTTPConnection) -> bool:
    return "text/html" in conn.headers.get("accept", "")


class RequireAuth:
    """Every path but the login page, the health check and the stylesheet needs the token.

    Sets `request.state.operator`, and `request.state.session` for cookie sessions (whose
    POSTs then need the CSRF token; bearer requests carry no cookie, so need none).
    """

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in PUBLIC or path.startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        state = scope.setdefault("state", {})
        header = conn.headers.get("authorization")
        response: Response | None = None
        if header is not None:
            if self.auth.bearer_matches(header):
                state.update(operator=DEFAULT_OPERATOR, session=None)
            else:
                response = unauthorized()
        else:
            session = self.auth.read_session(conn.cookies.get(COOKIE))
            if session is not None:
                state.update(operator=session.operator, session=session)
            elif _wants_html(conn):
                # A browser: to the login form, then back to the page it asked for (a form it
                # posted is not carried out).
                query = scope["query_string"].decode("latin-1")
                target = scope["path"] + ("?" + query if query else "")
                if scope["method"] != "GET":
                    target = "/"
                response = RedirectResponse(login_url(target), status_code=303)
            else:
                response = unauthorized()
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def unauthorized() -> Response:
    return JSONResponse(
        {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def login_url(target: str) -> str:
    from urllib.parse import urlencode

    return "/login" + ("?" + urlencode({"next": target}) if target not in ("", "/") else "")


def safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no `//host`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
