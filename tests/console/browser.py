"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven by Selenium.

`scripts/browser.sh` installs them (`make test` runs it). Screenshots of whole pages go to
tests/artifacts/console/ (git-ignored), to be looked at.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
WIDTH = 1280


def _find(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    raise RuntimeError(
        f"none of {', '.join(names)} found: run scripts/browser.sh"
        " (apt-get install chromium chromium-driver)"
    )


@contextmanager
def chromium() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = _find("chromium", "/usr/lib/chromium/chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={WIDTH},900",
    ):
        options.add_argument(argument)
    service = Service(_find("chromedriver", "/usr/lib/chromium/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> Path:
    """The whole page, beyond the window's height, as tests/artifacts/console/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")
    return path
