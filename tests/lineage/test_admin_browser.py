"""The lineage and audit admin pages in a real Chromium at 1280 px, as a person checks them: the
agents' names are on the page, nothing is cut off or scrolls sideways, a revoked branch is marked
(in words, and drawn dashed and struck through); light and dark. Screenshots go to
``browser-screenshots/`` (git-ignored; CI keeps them)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from delegation_idp.lineage import revocation
from delegation_idp.models import AuditEvent, TokenLineage
from tests.helpers import decode
from tests.support.browser import browser, dark_browser, overflowing, screenshot, sign_in  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.browser]

NAMES = ("Agent 1 (orchestrator)", "Agent 2", "MCP server 1")
PASSWORD = "pw-root-123456"


def row(token: str) -> TokenLineage:
    return TokenLineage.objects.get(jti=decode(token)[1]["jti"])


@pytest.fixture
def site(transactional_db: Any, cast: Any, chain: list[str], exchange: Any, django_user_model: Any) -> Any:
    """The seed's chain of four tokens, the third one's subtree revoked, one refused exchange, and
    a superuser; returns the rows."""
    exchange("agent1", chain[0], "https://unknown.example.com")
    revocation.revoke_subtree(row(chain[2]).jti, reason="admin")
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    return [row(t) for t in chain]


def driver_for(request: Any, scheme: str) -> Any:
    return request.getfixturevalue("dark_browser" if scheme == "dark" else "browser")


def signed_in(driver: Any, base_url: str) -> None:
    """``sign_in``, waiting for the admin index when the click returned before the browser left
    the login page (``sign_in`` checks the address at once, and Chromium is sometimes slower)."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        sign_in(driver, base_url, "root", PASSWORD)
    except AssertionError:
        WebDriverWait(driver, 10).until(lambda d: "/admin/login/" not in d.current_url)


def open_page(request: Any, live_server: Any, scheme: str, path: str) -> Any:
    driver = driver_for(request, scheme)
    signed_in(driver, live_server.url)
    driver.get(live_server.url + path)
    assert driver.execute_script("return window.innerWidth") == 1280
    dark = driver.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
    assert dark is (scheme == "dark")
    return driver


def visible_text(driver: Any, css: str = "#content") -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def assert_names_visible(driver: Any, css: str = "#content") -> None:
    text = visible_text(driver, css)
    for name in NAMES:
        assert name in text, f"{name!r} not visible in {css}"


def style(driver: Any, css: str, prop: str) -> str:
    return str(
        driver.execute_script(
            "return getComputedStyle(document.querySelector(arguments[0])).getPropertyValue(arguments[1])",
            css,
            prop,
        )
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_lineage_list_at_1280_px(request, live_server, site, scheme):
    driver = open_page(request, live_server, scheme, reverse("admin:delegation_idp_tokenlineage_changelist"))
    assert_names_visible(driver, "#result_list")
    text = visible_text(driver, "#result_list")
    assert "✕ revoked" in text and "● active" in text
    assert "https://agent2.example.com" in text
    screenshot(driver, f"lineage-list-{scheme}")
    assert overflowing(driver) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_lineage_tree_with_a_revoked_branch_at_1280_px(request, live_server, site, scheme):
    root, _, revoked, below = site
    driver = open_page(
        request, live_server, scheme, reverse("admin:delegation_idp_tokenlineage_tree", args=[root.pk])
    )
    assert_names_visible(driver, "#lineage-tree")
    top = f'li[data-jti="{revoked.jti}"]'
    node = f"{top} > .idp-node"
    assert "✕ revoked" in visible_text(driver, node)
    assert "✕ revoked" in visible_text(driver, f'li[data-jti="{below.jti}"] > .idp-node')
    assert "● active" in visible_text(driver, f'li[data-jti="{root.jti}"] > .idp-node')
    assert style(driver, node, "border-left-style") == "dashed"
    assert "line-through" in style(driver, f"{node} .idp-node-token", "text-decoration-line")
    assert style(driver, f'li[data-jti="{root.jti}"] > .idp-node', "border-left-style") == "solid"
    # connectors: the revoked item's elbow is drawn, dashed
    elbow = driver.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0]), '::before').borderLeftStyle", top
    )
    assert elbow == "dashed"
    assert "Revoke this subtree" in visible_text(driver, f'li[data-jti="{root.jti}"] > .idp-node')
    screenshot(driver, f"lineage-tree-{scheme}")
    assert overflowing(driver) == []


def test_who_acted_at_1280_px(request, live_server, site, cast):
    driver = open_page(
        request, live_server, "light", reverse("admin:delegation_idp_tokenlineage_acted", args=[cast.user.pk])
    )
    assert_names_visible(driver, "#acted")
    assert "✕ refused" in visible_text(driver, "#denied")
    screenshot(driver, "lineage-acted-light")
    assert overflowing(driver) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_audit_list_at_1280_px(request, live_server, site, scheme):
    driver = open_page(request, live_server, scheme, reverse("admin:delegation_idp_auditevent_changelist"))
    assert_names_visible(driver, "#result_list")
    text = visible_text(driver, "#result_list")
    assert "✓ allowed" in text and "✕ refused" in text
    assert "reason code" in visible_text(driver, "#changelist-filter")
    screenshot(driver, f"audit-list-{scheme}")
    assert overflowing(driver) == []


def test_audit_detail_at_1280_px(request, live_server, site, cast):
    event = AuditEvent.objects.get(client_id=cast["mcp-server1"].client_id, decision=AuditEvent.GRANTED)
    driver = open_page(
        request, live_server, "light", reverse("admin:delegation_idp_auditevent_change", args=[event.pk])
    )
    assert_names_visible(driver)
    assert "✓ allowed" in visible_text(driver)
    screenshot(driver, "audit-detail-light")
    assert overflowing(driver) == []
