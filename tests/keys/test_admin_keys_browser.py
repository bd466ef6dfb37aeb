"""The signing keys' admin pages in a real Chromium at 1280 px, light and dark: the list,
"Rotate keys now" clicked through its confirmation, and the emergency revocation's
confirmation page. Each fits (nothing scrolls sideways) and is saved as a screenshot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from delegation_idp.models import SigningKey
from delegation_idp.provider import keys, rotation
from tests.support.browser import browser, dark_browser, overflowing, screenshot, sign_in  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "pw-root-123456"
CHANGELIST = "/admin/delegation_idp/signingkey/"


@pytest.fixture
def key_set(live_server, transactional_db, django_user_model) -> dict[str, str]:
    """A current, a retired and a waiting next key; the superuser root."""
    keys.keyset.invalidate()
    now = timezone.now()
    keys.ensure_current_key(now - timedelta(days=2))
    rotation.rotate_keys(now - timedelta(hours=1), force=True)
    rotation.rotate_keys(now)  # the next key signs now, the first one retires
    rotation.rotate_keys(now, force=True)  # a new next key waits
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    yield dict(SigningKey.objects.values_list("state", "kid"))
    keys.keyset.invalidate()


def arrive(driver: Any, path_end: str, element_id: str) -> None:
    """Wait for the page a click leads to (a click does not wait for it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.current_url.split("?")[0].endswith(path_end))
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, element_id)))


def visible_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "content").text)


def check_list(driver: Any, key_set: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    text = visible_text(driver)
    for state, kid in key_set.items():
        assert kid[:16] in text, state  # each kid, shortened
        title = driver.find_element(By.CSS_SELECTOR, f'code.idp-kid[title="{kid}"]')
        assert title.is_displayed()
    for word in ("● current", "◔ next", "○ retired"):
        assert word in text, word
    assert "The next rotation is due" in text or "A next key is published and waiting" in text
    assert overflowing(driver) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_keys_list_at_1280_px(request, live_server, key_set, scheme):
    driver = request.getfixturevalue("dark_browser" if scheme == "dark" else "browser")
    sign_in(driver, live_server.url, "root", PASSWORD)
    driver.get(f"{live_server.url}{CHANGELIST}")
    check_list(driver, key_set)
    dark = driver.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark is (scheme == "dark")
    # The badge's colour comes from admin.css on Django's variables: it differs from the text's.
    from selenium.webdriver.common.by import By

    badge = driver.find_element(By.CSS_SELECTOR, ".idp-key-current")
    body = driver.find_element(By.CSS_SELECTOR, "#content")
    assert badge.value_of_css_property("color") != body.value_of_css_property("color")
    screenshot(driver, f"keys-list-{scheme}")


def test_rotate_keys_now_through_its_confirmation(browser, live_server, key_set):  # noqa: F811
    from selenium.webdriver.common.by import By

    SigningKey.objects.filter(state=SigningKey.NEXT).delete()  # nothing waiting: a rotation publishes
    sign_in(browser, live_server.url, "root", PASSWORD)
    browser.get(f"{live_server.url}{CHANGELIST}")
    button = browser.find_element(By.ID, "rotate-keys")
    assert button.text == "ROTATE KEYS NOW" or button.text.lower() == "rotate keys now"
    button.click()
    arrive(browser, f"{CHANGELIST}rotate/", "rotate-form")
    text = visible_text(browser)
    assert "Rotating now publishes a new next key" in text and key_set["current"] in text
    assert overflowing(browser) == []
    assert not SigningKey.objects.filter(state=SigningKey.NEXT).exists(), "a GET never rotates"
    screenshot(browser, "keys-rotate-confirmation")
    browser.find_element(By.CSS_SELECTOR, "#rotate-form input[type=submit]").click()
    arrive(browser, CHANGELIST, "changelist")
    upcoming = SigningKey.objects.get(state=SigningKey.NEXT)
    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li.success").text
    assert message.startswith(f"Published a new next key {upcoming.kid}")
    assert overflowing(browser) == []
    screenshot(browser, "keys-rotated")


def test_the_emergency_revocation_confirmation(browser, live_server, key_set):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sign_in(browser, live_server.url, "root", PASSWORD)
    browser.get(f"{live_server.url}{CHANGELIST}")
    current = SigningKey.objects.get(kid=key_set["current"])
    browser.find_element(By.CSS_SELECTOR, f'input[name="_selected_action"][value="{current.pk}"]').click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("revoke")
    browser.find_element(By.CSS_SELECTOR, "button[name=index], input[name=index]").click()
    arrive(browser, CHANGELIST, "revoke-keys")
    text = visible_text(browser)
    assert "Revoke these signing keys as compromised?" in text
    assert current.kid in text and "● current" in text
    assert overflowing(browser) == []
    screenshot(browser, "keys-revoke-confirmation")
    assert SigningKey.objects.get(pk=current.pk).state == SigningKey.CURRENT  # not confirmed
