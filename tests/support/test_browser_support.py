"""The admin browser helpers on Django admin's own index page, light and dark."""

from __future__ import annotations

import pytest

from tests.support.browser import browser, dark_browser, overflowing, screenshot, sign_in  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def admin_user(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123456")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_admin_index_fits_1280_px_and_is_saved(request, live_server, admin_user, scheme):
    driver = request.getfixturevalue("dark_browser" if scheme == "dark" else "browser")
    sign_in(driver, live_server.url, "root", "pw-root-123456")
    assert driver.execute_script("return window.innerWidth") == 1280
    dark = driver.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark is (scheme == "dark")
    assert overflowing(driver) == []
    driver.execute_script("document.body.style.width = '3000px'")  # the check can fail
    assert overflowing(driver)
    driver.execute_script("document.body.style.width = ''")
    assert screenshot(driver, f"admin-index-{scheme}").stat().st_size > 1000
