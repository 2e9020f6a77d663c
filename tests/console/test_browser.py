"""The console in a real browser, against the real console process and a real worker: log in,
find the dead letter, replay it and see it processed, resolve another from the page and one from
the CLI, and see `stats` stop counting them. Screenshots of each page: tests/artifacts/console/."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.cli.clitools import rows, run_cli, run_json
from tests.cli.test_replay_workers import CREATE_TABLES
from tests.console.browser import chromium, screenshot
from tests.console.conftest import MARKER, TOKEN, Seeded
from tests.procs import Served, run_worker, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def wenv(console_env: dict[str, str], database_url: str) -> dict[str, str]:
    """The coupon handler fails until `cli_test_switch.fixed`: it is fixed before the replay."""
    with psycopg.connect(database_url) as conn:
        conn.execute(CREATE_TABLES)
        conn.execute("UPDATE cli_test_switch SET fixed = true")
    return {**console_env, "USER_HANDLERS": "tests.cli.flaky_handlers"}


def _click(driver: WebDriver, element: WebElement) -> None:
    """Click what submits a form or follows a link, and wait for the next page to replace this
    one (reading the page before it has would find the old one, or an element gone stale)."""
    body = driver.find_element(By.TAG_NAME, "body")
    element.click()

    def replaced(_: WebDriver) -> bool:
        try:
            body.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            # Mid-navigation, Chromium may answer that the node left the document (an "unknown
            # error") instead of calling it stale.
            if "does not belong to the document" in str(e.msg):
                return True
            raise
        return False

    WebDriverWait(driver, 30).until(replaced)


def _text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _status(database_url: str, event_id: str) -> str:
    (row,) = rows(database_url, "SELECT status FROM stripe_events WHERE id = %s", (event_id,))
    return str(row["status"])


def test_without_the_token_the_browser_gets_the_login_page_and_no_data(
    browser: WebDriver, console: Served, seeded: Seeded
) -> None:
    for path in ("/", "/dead-letters", f"/events/{seeded.coupons[0]}", "/customers/cus_console"):
        browser.get(console.url + path)
        assert browser.current_url.startswith(console.url + "/login"), path
        assert "Console token" in _text(browser)
        source = browser.page_source  # the path asked for is kept (to return to), no data
        for data in (seeded.coupons[1], seeded.paid[0], "coupon handler", "dispute_open"):
            assert data not in source, (path, data)
    screenshot(browser, "01-login")
    browser.find_element(By.NAME, "operator").send_keys("mallory")
    browser.find_element(By.NAME, "token").send_keys("not-the-console-token")
    _click(browser, browser.find_element(By.CSS_SELECTOR, "form.login button"))
    assert "That is not the console's token." in _text(browser)
    assert browser.get_cookie("si_console") is None
    screenshot(browser, "02-login-refused")


def test_log_in_replay_the_dead_letter_resolve_another_and_stats_agree(
    browser: WebDriver, console: Served, wenv: dict[str, str], database_url: str, seeded: Seeded
) -> None:
    with run_worker(wenv, processes=1, threads=2):
        _flow(browser, console, wenv, database_url, seeded)


def _flow(
    browser: WebDriver, console: Served, env: dict[str, str], database_url: str, seeded: Seeded
) -> None:
    browser.get(console.url + "/dead-letters")
    browser.find_element(By.NAME, "operator").send_keys("alice")
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    _click(browser, browser.find_element(By.CSS_SELECTOR, "form.login button"))
    # Back where it was sent from, logged in as alice, with an HttpOnly, SameSite=Strict cookie.
    assert browser.current_url == console.url + "/dead-letters"
    cookie = browser.get_cookie("si_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page = _text(browser)
    assert "alice" in page and "5 open dead letter(s) in 2 group(s)" in page
    assert "RuntimeError: coupon handler is broken until fixed" in page
    screenshot(browser, "03-dead-letters")

    browser.get(console.url + "/")
    overview = _text(browser)
    assert "OPEN DEAD LETTERS\n5" in overview and "Failures, last 24 hours" in overview
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg rect.dead")
    screenshot(browser, "04-overview")

    # Find the dead letter, look at its error and attempts, replay it, see it processed.
    browser.get(console.url + "/dead-letters")
    dead = seeded.coupons[0]
    _click(browser, browser.find_element(By.LINK_TEXT, dead))
    event_page = _text(browser)
    assert "coupon handler is broken until fixed" in event_page
    attempts = browser.find_elements(
        By.XPATH, "//h2[.='Attempts']/following-sibling::table[1]//tbody/tr"
    )
    assert len(attempts) == 3
    assert MARKER in event_page  # the payload, shown as text: escaped, not run
    assert not browser.find_elements(By.XPATH, "//script")
    screenshot(browser, "05-event-dead")
    _click(browser, browser.find_element(By.XPATH, "//form[contains(@action, '/replay')]//button"))
    assert "Replayed: the event is pending again and enqueued." in _text(browser)
    wait_until(lambda: _status(database_url, dead) == "processed", timeout=60, interval=0.2)
    browser.refresh()
    processed = _text(browser)
    assert "Status\nprocessed" in processed and "replay #" in processed and "alice" in processed
    screenshot(browser, "06-event-replayed")

    # Resolve another dead letter from the page.
    browser.get(console.url + "/dead-letters")
    resolved_here = seeded.paid[0]
    form = browser.find_element(
        By.XPATH, f"//form[@action='/dead-letters/{resolved_here}/resolve']"
    )
    form.find_element(By.NAME, "reason").send_keys("test-mode invoice, nothing to apply")
    _click(browser, form.find_element(By.TAG_NAME, "button"))
    page = _text(browser)
    assert "Resolved: the dead letter is closed; the event stays dead." in page
    assert "3 open dead letter(s)" in page and resolved_here not in page
    screenshot(browser, "07-dead-letters-after-resolve")
    # ... and one from the CLI; stats count neither any more.
    resolved_cli = seeded.paid[1]
    cli = run_cli(env, "dead-letters", "resolve", resolved_cli, "--reason", "duplicate of INC-7")
    assert cli.returncode == 0, cli.stderr
    stats = run_json(env, "stats")
    assert stats["dead"] == 2 and stats["dead_resolved"] == 2
    browser.get(console.url + "/")
    assert "OPEN DEAD LETTERS\n2" in _text(browser)
    browser.get(console.url + f"/events/{resolved_here}")
    assert "by alice: test-mode invoice, nothing to apply" in _text(browser)

    # The customer: access taken away by the dispute keyed by its charge, in the timeline.
    browser.get(console.url + f"/customers/{seeded.customer}")
    customer = _text(browser)
    assert "Access: no — dispute_open" in customer
    assert (
        seeded.dispute_event in customer and "ch_console" in customer and "dp_console" in customer
    )
    screenshot(browser, "08-customer")

    # Bulk replay of a group: the dry run's count first, then the confirmation.
    browser.get(console.url + "/dead-letters")
    group = browser.find_element(By.XPATH, "//section[.//p[contains(., 'coupon handler')]]")
    _click(browser, group.find_element(By.XPATH, ".//form[.//input[@value='replay']]//button"))
    confirm = _text(browser)
    assert "Replay 1 dead letter(s)?" in confirm and seeded.coupons[1] in confirm
    screenshot(browser, "09-bulk-confirm")
    _click(browser, browser.find_element(By.XPATH, "//form[.//input[@name='confirm']]//button"))
    assert "Replayed 1 dead event(s)." in _text(browser)
    wait_until(lambda: _status(database_url, seeded.coupons[1]) == "processed", timeout=60)

    browser.get(console.url + "/events?status=processed")
    assert seeded.coupons[1] in _text(browser)
    screenshot(browser, "10-events")

    audits = rows(database_url, "SELECT requested_by, via, mode FROM replay_audit ORDER BY id")
    assert audits == [
        {"requested_by": "alice", "via": "console", "mode": "ids"},
        {"requested_by": "alice", "via": "console", "mode": "dead"},
    ]
    logs = console.process.logs()
    assert "console.replayed" in logs and "console.resolved" in logs
    assert "payload-marker" not in logs
