"""A real browser for the admin pages: headless Debian Chromium through selenium, 1280 px wide.

* the fixtures ``browser`` (light) and ``dark_browser`` (``prefers-color-scheme: dark``, which
  Django admin's own stylesheet follows); a test module or conftest imports them::

      from tests.support.browser import browser, dark_browser  # noqa: F401 - fixtures

  They skip with a clear message when Chromium is missing outside CI, and fail under
  ``CI=true``, where ``.ci/run`` installs it;
* :func:`sign_in` signs a user in on the admin's login page;
* :func:`overflowing` lists what a person would see cut off or scrolling sideways: the page
  itself, or any table or ``pre`` wider than its box (scroll width compared with client
  width);
* :func:`screenshot` saves the page as ``browser-screenshots/<name>.png`` at the repository's
  top (git-ignored; CI keeps the folder as an artifact).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH = 1280
SCREENSHOTS = Path(__file__).resolve().parents[2] / "browser-screenshots"

__all__ = ["SCREENSHOTS", "WIDTH", "browser", "dark_browser", "overflowing", "screenshot", "sign_in"]


def _chromium(*, dark: bool) -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        message = f"{', '.join(missing)} not installed (Debian packages chromium and chromium-driver)"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true requires it")
        pytest.skip(f"{message}; this test runs in CI (CI=true), where .ci/run installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="admin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},1600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    if dark:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium, 1280 px wide, light colour scheme."""
    yield from _chromium(dark=False)


@pytest.fixture
def dark_browser() -> Iterator[Any]:
    """Headless Chromium, 1280 px wide, ``prefers-color-scheme: dark``."""
    yield from _chromium(dark=True)


def sign_in(driver: Any, base_url: str, username: str, password: str) -> None:
    """Sign in on the admin's login page; fails when the admin index does not follow."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/admin/login/?next=/admin/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    try:  # a click does not wait for the page it leads to: on a busy machine, wait for it
        WebDriverWait(driver, 10).until(lambda d: "/admin/login/" not in d.current_url)
    except TimeoutException:
        pass
    assert "/admin/login/" not in driver.current_url, driver.page_source[:2000]


_OVERFLOW = """
const out = [];
const root = document.documentElement;
if (root.scrollWidth > root.clientWidth + 1) out.push(`page: ${root.scrollWidth} > ${root.clientWidth}`);
for (const el of document.querySelectorAll('#content table, #content pre, #content .results')) {
  if (el.scrollWidth > el.clientWidth + 1) {
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className ? '.' + String(el.className).split(' ').join('.') : '');
    out.push(`${name}: ${el.scrollWidth} > ${el.clientWidth}`);
  }
}
return out;
"""


def overflowing(driver: Any) -> list[str]:
    """What is wider than its box on the current page (empty when nothing is)."""
    return list(driver.execute_script(_OVERFLOW))


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole page (as tall as its content) under :data:`SCREENSHOTS`."""
    SCREENSHOTS.mkdir(exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(WIDTH, max(800, min(height + 120, 8000)))
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    driver.save_screenshot(str(path))
    return path
