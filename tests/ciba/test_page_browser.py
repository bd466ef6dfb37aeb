"""The approval page in a real Chromium at 1280 px (issue 21 point 5): the user signs in on the
site's own login page, reads the request (the chain of agents by name, the binding message,
the amount, the time left), clicks Approve or Deny; then the agent's poll gets the token, or
``access_denied``. Nothing on the page is cut off or scrolls sideways. Screenshots go to
``browser-screenshots/`` (git-ignored; CI keeps them)."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import ApprovalRequest, AuditEvent, DelegationRule
from example_project.demo_services.seed import PASSWORD
from tests.ciba.conftest import PAYMENT
from tests.helpers import assert_oauth_error, decode, snapshot
from tests.support.browser import browser, overflowing, screenshot  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PAGE = "/o/approvals/"


@pytest.fixture
def site(transactional_db: Any, live_server: Any, asked: Any) -> tuple[str, dict[str, Any], ApprovalRequest]:
    """agent1 asked for the user's approval; the live site's URL, the agent's answer, the request."""
    body, approval = asked
    return live_server.url, body, approval


def sign_in_to_the_page(driver: Any, base: str, username: str) -> None:
    """Open the page signed out: the site's login page, then the page again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + PAGE)
    WebDriverWait(driver, 15).until(lambda d: "/accounts/login/" in d.current_url)
    assert "next=/o/approvals/" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "approvals"))
    assert driver.current_url == base + PAGE


def visible(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def read_the_request(driver: Any, approval: ApprovalRequest, name: str) -> Any:
    """What the user reads before deciding; returns the request's section."""
    from selenium.webdriver.common.by import By

    assert driver.execute_script("return window.innerWidth") == 1280
    section = f"#approval-{approval.pk}"
    assert "Agent 1 (orchestrator) asks to act for you" in visible(driver, f"{section} .approval-title")
    chain = visible(driver, f"{section} .approval-chain")
    assert "asking now" in chain and "Agent 1 (orchestrator)" in chain
    assert "https://agent1.example.com" in chain
    assert "Agent 2" in visible(driver, f"{section} .approval-audience")
    assert visible(driver, f"{section} .approval-binding-message") == "Pay Merchant A 123.50 EUR"
    details = visible(driver, f"{section} .approval-detail")
    assert "payment_initiation" in details and "123.50 EUR" in details and "Merchant A" in details
    assert 0 < int(visible(driver, f"{section} .approval-seconds")) <= 300
    assert visible(driver, f"{section} .approval-expires")
    screenshot(driver, f"approval-page-{name}")
    assert overflowing(driver) == []
    assert _wider_than_their_box(driver) == []
    return driver.find_element(By.CSS_SELECTOR, section)


def _wider_than_their_box(driver: Any) -> list[str]:
    """The page's own boxes (``overflowing`` looks at the admin's ``#content``)."""
    return list(
        driver.execute_script(
            """
            const out = [];
            for (const el of document.querySelectorAll('#approvals, #approvals section, #approvals dl')) {
              const name = el.id || el.className;
              if (el.scrollWidth > el.clientWidth + 1) out.push(`${name}: ${el.scrollWidth}`);
            }
            return out;
            """
        )
    )


def decide_in_the_browser(driver: Any, section: Any, button: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    section.find_element(By.CSS_SELECTOR, button).click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "approval-decided"))
    note = visible(driver, "#approval-decided")
    assert visible(driver, "#approvals-none") == "Nothing waits for your approval."
    return note


def test_the_user_approves_in_the_browser_and_the_agent_gets_the_token(
    browser: Any,  # noqa: F811
    site: Any,
    poll: Any,
    cast: Any,
) -> None:
    base, body, approval = site
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "authorization_pending")
    ApprovalRequest.objects.filter(pk=approval.pk).update(polled_at=None)  # no slow_down below
    sign_in_to_the_page(browser, base, cast.user.get_username())
    section = read_the_request(browser, approval, "pending")
    note = decide_in_the_browser(browser, section, "button.approval-approve")
    assert note.startswith("Approved: the request of Agent 1 (orchestrator) toward Agent 2")
    screenshot(browser, "approval-page-approved")
    assert overflowing(browser) == []
    stored = ApprovalRequest.objects.get(pk=approval.pk)
    assert stored.status == ApprovalRequest.APPROVED and stored.decided_by == cast.user

    answer = poll("agent1", body["auth_req_id"])
    assert answer.status_code == 200, answer.content
    token = answer.json()
    assert token["authorization_details"] == [PAYMENT]
    claims = decode(token["access_token"])[1]
    assert claims["aud"] == cast["agent2"].uri and claims["act"] == {"sub": cast["agent1"].uri}
    assert AuditEvent.objects.filter(event="approval_decision", decision="granted").count() == 1


def test_the_user_denies_in_the_browser_and_the_agent_is_refused(
    browser: Any,  # noqa: F811
    site: Any,
    poll: Any,
    cast: Any,
) -> None:
    base, body, approval = site
    sign_in_to_the_page(browser, base, cast.user.get_username())
    section = read_the_request(browser, approval, "before-deny")
    note = decide_in_the_browser(browser, section, "button.approval-deny")
    assert note.startswith("Denied: the request of Agent 1 (orchestrator)")
    assert "nothing was issued" in note
    screenshot(browser, "approval-page-denied")
    assert overflowing(browser) == []
    assert ApprovalRequest.objects.get(pk=approval.pk).status == ApprovalRequest.DENIED

    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "access_denied")
    assert snapshot() == before
    assert AuditEvent.objects.filter(event="backchannel_token", reason="approval_denied").count() == 1


def test_a_longer_chain_newest_agent_first_and_its_nested_act(
    browser: Any,  # noqa: F811
    transactional_db: Any,
    live_server: Any,
    cast: Any,
    user_token: str,
    exchange: Any,
    backchannel: Any,
    poll: Any,
) -> None:
    """agent2, holding agent1's delegated token, asks for the hop to the MCP server."""
    from selenium.webdriver.common.by import By

    hop = exchange("agent1", user_token, cast["agent2"].uri)
    assert hop.status_code == 200, hop.content
    rule = DelegationRule.objects.get(actor__uri=cast["agent2"].uri, audiences__uri=cast["mcp-server1"].uri)
    rule.approval = DelegationRule.APPROVAL_ALWAYS
    rule.save()
    asked = backchannel("agent2", hop.json()["access_token"], audience=cast["mcp-server1"].uri)
    assert asked.status_code == 200, asked.content
    approval = ApprovalRequest.objects.get()
    assert approval.chain == [cast["agent2"].uri, cast["agent1"].uri]

    sign_in_to_the_page(browser, live_server.url, cast.user.get_username())
    items = browser.find_elements(By.CSS_SELECTOR, f"#approval-{approval.pk} .approval-chain li")
    lines = [item.text for item in items]
    assert lines[0].startswith("asking now Agent 2") and "https://agent2.example.com" in lines[0]
    assert "Agent 1 (orchestrator)" in lines[1] and lines[2].endswith("you")
    assert "MCP server 1" in visible(browser, f"#approval-{approval.pk} .approval-audience")
    screenshot(browser, "approval-page-longer-chain")
    assert overflowing(browser) == [] and _wider_than_their_box(browser) == []
    section = browser.find_element(By.CSS_SELECTOR, f"#approval-{approval.pk}")
    decide_in_the_browser(browser, section, "button.approval-approve")

    answer = poll("agent2", asked.json()["auth_req_id"])
    assert answer.status_code == 200, answer.content
    claims = decode(answer.json()["access_token"])[1]
    assert claims["act"] == {"sub": cast["agent2"].uri, "act": {"sub": cast["agent1"].uri}}
