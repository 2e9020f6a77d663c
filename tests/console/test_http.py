"""The console's HTTP surface against the real process: no data without the token, bearer and
cookie sessions, CSRF on cookie POSTs, the CLI's rules for actions, and nothing secret logged."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.cli.clitools import rows, run_json
from tests.console.conftest import MARKER, TOKEN, Seeded
from tests.procs import REPO_ROOT, Served, child_env

BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html"}
PAGES = ["/", "/events", "/events?status=dead", "/dead-letters", "/customers/cus_console"]


def _client(console: Served) -> httpx.Client:
    return httpx.Client(base_url=console.url, follow_redirects=False, timeout=10)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def _login(client: httpx.Client, operator: str = "bob") -> str:
    """Log in through the form; returns the CSRF token the session's pages carry."""
    response = client.post("/login", data={"operator": operator, "token": TOKEN, "next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    return _csrf(client.get("/dead-letters"))


def _audits(database_url: str) -> list[dict[str, Any]]:
    return rows(
        database_url, "SELECT requested_by, via, mode, replayed FROM replay_audit ORDER BY id"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "CONSOLE_TOKEN is not set"),
        ({"CONSOLE_TOKEN": "short"}, "CONSOLE_TOKEN must be at least 16 characters"),
        ({"CONSOLE_TOKEN": TOKEN, "DATABASE_URL": "banana"}, "DATABASE_URL is neither"),
    ],
)
def test_the_console_refuses_to_start_without_a_good_token(
    env: dict[str, str], extra: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stripe_ingest.console"],
        env=child_env({**env, **extra}),
        cwd=REPO_ROOT / "tests" / "console",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("stripe-ingest console: ") and message in line
    assert "banana" not in line


def test_no_page_and_no_action_without_the_token(
    console: Served, seeded: Seeded, console_env: dict[str, str], database_url: str
) -> None:
    with _client(console) as client:
        for path in PAGES:
            plain = client.get(path)
            assert plain.status_code == 401 and plain.json() == {"error": "unauthorized"}, path
            assert plain.headers["www-authenticate"] == "Bearer"
            browser = client.get(path, headers=HTML)
            assert browser.status_code == 303 and browser.headers["location"].startswith("/login")
            wrong = client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"})
            assert wrong.status_code == 401
            for response in (plain, browser, wrong):
                assert seeded.paid[0] not in response.text and "KeyError" not in response.text
        # Bytes that are not ASCII are compared as bytes: refused, not an error.
        odd = client.get("/", headers=[(b"authorization", b"Bearer t\xe9st")])
        assert odd.status_code == 401
        forged = {**HTML, "Cookie": "si_console=eyJvcCI6ImV2ZSJ9.00"}
        assert client.get("/", headers=forged).status_code == 303
        actions = [
            f"/events/{seeded.coupons[0]}/replay",
            f"/dead-letters/{seeded.paid[0]}/resolve",
            "/dead-letters/bulk",
        ]
        for path in actions:
            data = {"reason": "x", "action": "replay"}
            for headers in ({}, {**HTML, "Authorization": "Bearer nope"}):
                assert client.post(path, data=data, headers=headers).status_code == 401, path
            browser_post = client.post(path, data=data, headers=HTML)
            assert browser_post.status_code == 303
            assert browser_post.headers["location"].startswith("/login")
    assert run_json(console_env, "stats")["dead"] == 5
    assert _audits(database_url) == []


def test_with_the_bearer_token_pages_show_the_data_escaped(console: Served, seeded: Seeded) -> None:
    with _client(console) as client:
        for path in PAGES:
            assert client.get(path, headers=BEARER).status_code == 200, path
        event = client.get(f"/events/{seeded.coupons[0]}", headers=BEARER).text
        assert "RuntimeError: coupon handler is broken until fixed" in event
        assert "&lt;script&gt;alert(&#39;payload-marker-5f1c&#39;)&lt;/script&gt;" in event
        assert MARKER not in event and event.count('<td class="num">') == 3  # attempts
        customer = client.get("/customers/cus_console", headers=BEARER).text
        assert "dispute_open" in customer and seeded.dispute_event in customer
        overview = client.get("/", headers=BEARER)
        assert (
            "<svg" in overview.text and "script" not in overview.headers["content-security-policy"]
        )
        assert "default-src 'none'" in overview.headers["content-security-policy"]
        missing = client.get("/events/evt_nope", headers=BEARER)
        assert missing.status_code == 404 and "unknown event id: evt_nope" in missing.text
        bad = client.get("/events?status=exploded", headers=BEARER)
        assert bad.status_code == 400
        assert client.get("/customers/cus_nobody", headers=BEARER).status_code == 404
    assert "payload-marker" not in console.process.logs()


def test_bearer_actions_need_no_csrf_and_are_audited_as_console(
    console: Served, seeded: Seeded, console_env: dict[str, str], database_url: str
) -> None:
    with _client(console) as client:
        resolved = client.post(
            f"/dead-letters/{seeded.paid[0]}/resolve", data={"reason": "noise"}, headers=BEARER
        )
        assert resolved.status_code == 303
        assert resolved.headers["location"] == "/?notice=resolved"
        again = client.post(
            f"/dead-letters/{seeded.paid[0]}/resolve", data={"reason": "noise"}, headers=BEARER
        )
        assert again.headers["location"].endswith("notice=already-resolved")
        empty = client.post(
            f"/dead-letters/{seeded.paid[1]}/resolve", data={"reason": " "}, headers=BEARER
        )
        assert empty.status_code == 400 and "give a reason" in empty.text
        processed = client.post(
            f"/dead-letters/{seeded.dispute_event}/resolve", data={"reason": "x"}, headers=BEARER
        )
        assert processed.status_code == 409
        assert f"not dead, nothing resolved: {seeded.dispute_event} (processed)" in processed.text
        forced = client.post(f"/events/{seeded.dispute_event}/replay", headers=BEARER, data={})
        assert forced.status_code == 409 and "pass --force" in forced.text
        replayed = client.post(f"/events/{seeded.coupons[0]}/replay", headers=BEARER, data={})
        assert replayed.status_code == 303
    stats = run_json(console_env, "stats")
    assert (stats["dead"], stats["dead_resolved"], stats["counts"]["pending"]) == (3, 1, 1)
    assert _audits(database_url) == [
        {"requested_by": "console", "via": "console", "mode": "ids", "replayed": 1}
    ]
    (resolution,) = rows(database_url, "SELECT resolved_by, via FROM dead_letter_resolutions")
    assert resolution == {"resolved_by": "console", "via": "console"}


def test_cookie_sessions_need_the_csrf_token_on_every_post(
    console: Served, seeded: Seeded, console_env: dict[str, str], database_url: str
) -> None:
    with _client(console) as client:
        wrong = client.post("/login", data={"token": "nope" * 5, "operator": "eve"})
        assert wrong.status_code == 401 and "si_console" not in wrong.cookies
        response = client.post("/login", data={"operator": "bob\x00 ", "token": TOKEN})
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
        csrf = _csrf(client.get("/dead-letters"))
        path = f"/dead-letters/{seeded.paid[0]}/resolve"
        for token in (None, "", "0" * 64):
            data = {"reason": "noise"} | ({"csrf": token} if token is not None else {})
            refused = client.post(path, data=data)
            assert refused.status_code == 403 and "CSRF" in refused.text
        assert run_json(console_env, "stats")["dead"] == 5
        done = client.post(path, data={"reason": "noise", "csrf": csrf, "next": "//evil.example/"})
        assert done.status_code == 303 and done.headers["location"] == "/?notice=resolved"
        assert run_json(console_env, "stats")["dead"] == 4
        (who,) = rows(
            database_url, "SELECT resolved_by FROM dead_letters WHERE resolved_at IS NOT NULL"
        )
        assert who == {"resolved_by": "bob"}
        not_form = client.post(
            path, content=b'{"reason": "x"}', headers={"Content-Type": "application/json"}
        )
        assert not_form.status_code == 415
        # The cookie is signed: changed, it is no session.
        value = cookie.split(";")[0].split("=", 1)[1]
        with _client(console) as other:
            assert (
                other.get("/", headers={**HTML, "Cookie": f"si_console={value}"}).status_code == 200
            )
            tampered = {**HTML, "Cookie": f"si_console={value[:-2]}00"}
            assert other.get("/", headers=tampered).status_code == 303
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and 'si_console=""' in out.headers["set-cookie"]
        assert client.get("/", headers=HTML).status_code == 303


def test_bulk_replay_shows_the_dry_run_count_then_asks_above_the_threshold(
    console_env: dict[str, str], seeded: Seeded, database_url: str
) -> None:
    from tests.procs import run_console

    with (
        run_console({**console_env, "REPLAY_CONFIRM_THRESHOLD": "2"}) as console,
        _client(console) as client,
    ):
        csrf = _login(client)
        group = {
            "csrf": csrf,
            "action": "replay",
            "type": "invoice.paid",
            "error": "KeyError: 'lines'",
        }
        plan = client.post("/dead-letters/bulk", data=group)
        assert plan.status_code == 200 and "Replay 3 dead letter(s)?" in plan.text
        assert 'name="expected" value="3"' in plan.text and "more than 2" in plan.text
        assert _audits(database_url) == []
        confirm = {**group, "confirm": "yes", "expected": "3"}
        unticked = client.post("/dead-letters/bulk", data=confirm)
        assert unticked.status_code == 409 and "tick the box" in unticked.text
        stale = client.post("/dead-letters/bulk", data={**confirm, "expected": "2", "yes": "on"})
        assert stale.status_code == 409 and "The group changed since you looked" in stale.text
        assert _audits(database_url) == []
        done = client.post("/dead-letters/bulk", data={**confirm, "yes": "on"})
        assert (
            done.status_code == 303
            and done.headers["location"] == "/dead-letters?notice=bulk-replayed&n=3"
        )
        assert "Replayed 3 dead event(s)." in client.get(done.headers["location"]).text
    assert _audits(database_url) == [
        {"requested_by": "bob", "via": "console", "mode": "dead", "replayed": 3}
    ]
    (audit,) = rows(database_url, "SELECT filter FROM replay_audit")
    assert (
        audit["filter"]["type"] == "invoice.paid"
        and audit["filter"]["error"] == "KeyError: 'lines'"
    )
    assert run_json(console_env, "stats")["counts"]["pending"] == 3
