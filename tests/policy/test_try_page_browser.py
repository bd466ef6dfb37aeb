"""The "Try a delegation" page in a real Chromium at 1280 px, light and dark: an allowed and
a refused request, the agents by name, nothing cut off or scrolling sideways, saved as
screenshots."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from delegation_idp.models import Party
from delegation_idp.provider import keys
from tests.support.browser import browser, dark_browser, overflowing, screenshot, sign_in  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PASSWORD = "pw-root-123456"
TRY_URL = "/admin/delegation_idp/party/try/"


@pytest.fixture
def cast_site(live_server, transactional_db, django_user_model) -> dict[str, Party]:
    """The seed's cast (user -> agent1 -> agent2 -> mcp-server1 -> resource server), root."""
    from example_project.demo_services.seed import CAST, RESOURCE_SERVER, seed

    keys.keyset.invalidate()
    seed()
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    parties = {name: Party.objects.get(uri=uri) for name, (uri, _name, _kind) in CAST.items()}
    parties["resource"] = Party.objects.get(uri=RESOURCE_SERVER)
    yield parties
    keys.keyset.invalidate()


def ask(driver: Any, base: str, actor: Party, audience: Party, chain: Party | None = None) -> str:
    query = {
        "request_kind": "exchange",
        "actor": actor.pk,
        "audiences": audience.pk,
        "chain": chain.uri if chain else "",
        "subject_scope": "tasks.read tasks.write",
    }
    driver.get(f"{base}{TRY_URL}?{urlencode(query)}")
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "try-outcome").text)


def shown(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    assert element.is_displayed(), element_id
    return str(element.text)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_an_allowed_and_a_refused_request_at_1280_px(request, live_server, cast_site, scheme):
    driver = request.getfixturevalue("dark_browser" if scheme == "dark" else "browser")
    agent1, agent2, mcp, resource = (cast_site[n] for n in ("agent1", "agent2", "mcp-server1", "resource"))
    sign_in(driver, live_server.url, "root", PASSWORD)

    outcome = ask(driver, live_server.url, agent2, mcp, chain=agent1)
    assert "✓ allowed" in shown(driver, "try-decision")
    for party in (agent2, agent1, mcp):  # by name, with the URI under it
        assert party.name in outcome and party.uri in outcome, party.name
    chain = shown(driver, "try-chain")
    assert chain.index(agent2.name) < chain.index(agent1.name)
    assert mcp.name in shown(driver, "try-allowed-audiences")
    assert "agent2 calls the MCP server for agent1's task" in shown(driver, "try-rules")
    assert overflowing(driver) == []
    screenshot(driver, f"try-allowed-{scheme}")

    outcome = ask(driver, live_server.url, agent2, resource, chain=agent1)
    decision = shown(driver, "try-decision")
    assert "✕ refused" in decision and "audience_not_permitted" in decision and "invalid_target" in decision
    assert "issued chain" not in driver.find_element("id", "content").text.lower()
    assert resource.name in outcome and "not among the audiences the rules allow" in outcome
    assert mcp.name in shown(driver, "try-allowed-audiences")
    assert agent1.name in shown(driver, "try-given-chain")
    assert overflowing(driver) == []
    screenshot(driver, f"try-refused-{scheme}")


def test_the_form_is_filled_in_and_evaluated(browser, live_server, cast_site):  # noqa: F811
    """The page as a person uses it: choose, type, press Evaluate."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    agent1, agent2 = cast_site["agent1"], cast_site["agent2"]
    sign_in(browser, live_server.url, "root", PASSWORD)
    browser.get(f"{live_server.url}{TRY_URL}")
    assert overflowing(browser) == []
    screenshot(browser, "try-empty")
    Select(browser.find_element(By.ID, "id_actor")).select_by_value(str(agent1.pk))
    Select(browser.find_element(By.ID, "id_audiences")).select_by_value(str(agent2.pk))
    browser.find_element(By.ID, "id_subject_scope").send_keys("tasks.read")
    browser.find_element(By.CSS_SELECTOR, "#try-form input[type=submit]").click()
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "try-outcome")))
    assert "✓ allowed" in shown(browser, "try-decision")
    assert agent1.name in shown(browser, "try-actor") and agent2.name in shown(browser, "try-audience")
    assert overflowing(browser) == []
