"""The party and rule admin pages in a real browser (headless Chromium, 1280 px): the party
list, a party's page with its rules and JWK set, the no-rules warning, the rule list and
reordering, and the one-time page of a reissued secret; the party page in dark mode too.
Each asserts what a person checks (the names are there, nothing is cut off or scrolls
sideways) and saves a screenshot under browser-screenshots/."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider.agents import allow, register_party
from tests.support.browser import SCREENSHOTS, browser, dark_browser, overflowing, screenshot  # noqa: F401
from tests.support.browser import sign_in as _sign_in

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "pw-root-123456"  # noqa: S105 - a test user's


@pytest.fixture
def site(live_server: Any, transactional_db: Any, django_user_model: Any) -> dict[str, Any]:
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    orchestrator = register_party(
        "https://orchestrator.agents.example.com",
        "Travel orchestrator",
        Party.AGENT,
        redirect_uris="https://orchestrator.agents.example.com/callback",
    ).party
    booking = register_party(
        "https://booking-mcp.example.com/mcp", "Booking MCP server", Party.MCP_SERVER
    ).party
    calendar = register_party("https://calendar.example.com", "Calendar API", Party.RESOURCE_SERVER).party
    idle = register_party("https://idle-agent.example.com", "Idle agent (no rules yet)", Party.AGENT).party
    allow(
        orchestrator,
        [booking, calendar],
        "bookings.read bookings.write calendar.read",
        direct_from_user=True,
        description="Book trips for the signed-in traveller",
    )
    allow(orchestrator, [calendar], "calendar.read", direct_from_user=True)
    allow(
        booking,
        [calendar],
        "calendar.read",
        upstream=[orchestrator],
        max_depth=2,
        description="The booking server checks the traveller's calendar",
    )
    key = jose.generate_key("ES256")
    orchestrator.jwks = {"keys": [{**key.public_jwk(), "kid": "orchestrator-2026-01"}]}
    orchestrator.save()
    return {
        "base": live_server.url,
        "orchestrator": orchestrator,
        "booking": booking,
        "calendar": calendar,
        "idle": idle,
    }


def sign_in(driver: Any, base: str, username: str, password: str) -> None:
    """tests.support.browser.sign_in, waiting for the admin index: that helper reads the URL
    right after the click, sometimes before the browser has left the login page."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        _sign_in(driver, base, username, password)
    except AssertionError:
        WebDriverWait(driver, 15).until(lambda d: "/admin/login/" not in d.current_url)


def visible_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "content").text)


def check(driver: Any, name: str, *expected: str) -> None:
    wide = overflowing(driver)  # before the screenshot, which makes the window taller
    screenshot(driver, name)  # first, so a failure has its picture too
    text = visible_text(driver)
    for words in expected:
        assert words in text, f"{words!r} not visible on {driver.current_url}"
    assert wide == [], driver.current_url


def test_party_list(browser, site):  # noqa: F811
    sign_in(browser, site["base"], "root", PASSWORD)
    browser.get(f"{site['base']}/admin/delegation_idp/party/")
    check(
        browser,
        "parties-list",
        "Travel orchestrator",
        "https://orchestrator.agents.example.com",
        "Booking MCP server",
        "Calendar API",
        "⚠ none",
    )


def test_party_page_with_rules_and_keys_and_the_no_rules_warning(browser, site):  # noqa: F811
    from selenium.webdriver.common.by import By

    sign_in(browser, site["base"], "root", PASSWORD)
    browser.get(f"{site['base']}/admin/delegation_idp/party/{site['orchestrator'].pk}/change/")
    check(
        browser,
        "parties-change-page",
        "Its rules, in precedence order",
        "Book trips for the signed-in traveller",
        "Travel orchestrator → Calendar API",
        "Booking MCP server",
        "orchestrator-2026-01",
        "EC P-256",
    )
    assert browser.find_element(By.ID, "party-client-id").text == site["orchestrator"].application.client_id
    # Close-ups of what the page leads with: the summary and the client fieldset.
    browser.find_element(By.ID, "party-summary").screenshot(
        str(SCREENSHOTS / "parties-change-page-summary.png")
    )
    browser.find_element(By.CSS_SELECTOR, "fieldset[aria-labelledby=fieldset-0-1-heading]").screenshot(
        str(SCREENSHOTS / "parties-change-page-client.png")
    )
    assert not browser.find_elements(By.ID, "no-rules-warning")
    assert browser.find_element(By.NAME, "jwks").get_attribute("value").lstrip().startswith("{")

    browser.get(f"{site['base']}/admin/delegation_idp/party/{site['idle'].pk}/change/")
    check(browser, "parties-change-page-no-rules", "Idle agent (no rules yet) has no delegation rules")
    assert browser.find_element(By.NAME, "jwks").get_attribute("value") == ""


def test_party_page_in_dark_mode(dark_browser, site):  # noqa: F811
    sign_in(dark_browser, site["base"], "root", PASSWORD)
    dark_browser.get(f"{site['base']}/admin/delegation_idp/party/{site['orchestrator'].pk}/change/")
    check(
        dark_browser,
        "parties-change-page-dark",
        "Travel orchestrator",
        "Book trips for the signed-in traveller",
    )
    background = dark_browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "Django admin's dark theme applies"


def test_rule_list_and_reordering(browser, site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    orchestrator = site["orchestrator"]
    sign_in(browser, site["base"], "root", PASSWORD)
    browser.get(f"{site['base']}/admin/delegation_idp/delegationrule/")
    check(
        browser,
        "rules-list",
        "Book trips for the signed-in traveller",
        "Travel orchestrator → Calendar API",
        "Booking MCP server",
    )
    # On the party page, move the second rule up: it is tried first from now on.
    second = DelegationRule.objects.filter(actor=orchestrator).order_by("position")[1]
    browser.get(f"{site['base']}/admin/delegation_idp/party/{orchestrator.pk}/change/")
    browser.find_element(By.CSS_SELECTOR, f'tr[data-rule="{second.pk}"] button.idp-move-up').click()
    WebDriverWait(browser, 15).until(lambda d: "is now number 1 in precedence" in d.page_source)
    assert DelegationRule.objects.filter(actor=orchestrator).order_by("position").first().pk == second.pk
    rows = browser.find_elements(By.CSS_SELECTOR, "#party-summary tr.rule-row")
    assert rows[0].get_attribute("data-rule") == str(second.pk)
    check(browser, "rules-reordered-on-party-page", "Travel orchestrator → Calendar API")

    # On the rule list, type a precedence and save.
    browser.get(f"{site['base']}/admin/delegation_idp/delegationrule/")
    box = browser.find_element(
        By.CSS_SELECTOR, f'tr:has(input[value="{second.pk}"]) input[name$="-position"]'
    )
    box.clear()
    box.send_keys("9")
    browser.find_element(By.NAME, "_save").click()
    WebDriverWait(browser, 15).until(lambda d: "successfully" in d.page_source)
    assert DelegationRule.objects.get(pk=second.pk).position == 9
    check(browser, "rules-list-saved", "Book trips for the signed-in traveller")


def test_reissue_one_time_page(browser, site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    orchestrator = site["orchestrator"]
    sign_in(browser, site["base"], "root", PASSWORD)
    browser.get(f"{site['base']}/admin/delegation_idp/party/{orchestrator.pk}/change/")
    browser.find_element(By.ID, "reissue-secret-link").click()
    check(browser, "parties-reissue-confirm", "Travel orchestrator", "stops working at once")
    browser.find_element(By.ID, "confirm-reissue").click()
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "client-secret"))
    secret = browser.find_element(By.ID, "client-secret").text
    assert len(secret) >= 40
    check(browser, "parties-reissue-secret", "Travel orchestrator", "has a new client secret")
    browser.find_element(By.ID, "continue-link").click()
    assert secret not in browser.page_source
