"""A real browser drives Django admin: register an agent and its rule, read the one-time
secret from the page, and the agent exchanges over HTTP; without the rule it is refused.

Headless Debian Chromium through selenium. Skips with a clear message when Chromium is
missing outside CI; fails under CI=true, where ``.ci/run`` installs it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import override_settings

from delegation_idp import TOKEN_EXCHANGE_GRANT
from tests.conftest import ACCESS_TOKEN_TYPE, Agent, authorize_code, code_form
from tests.helpers import decode
from tests.support.browser import browser  # noqa: F401, F811 - a fixture

AGENT_URI = "https://browser-agent.example.com"
RESOURCE = "https://rs.example.com"

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def site(live_server, transactional_db, settings, django_user_model):
    """The live site, with the issuer equal to its own URL."""
    from delegation_idp.models import Party
    from delegation_idp.provider import keys
    from delegation_idp.provider.agents import register_party

    with override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, "ISSUER": live_server.url}):
        keys.keyset.invalidate()
        keys.ensure_current_key()
        django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123456")
        user = django_user_model.objects.create_user("alice", "alice@example.com", "pw-alice-123")
        register_party(RESOURCE, "Resource server", Party.RESOURCE_SERVER)
        yield live_server.url, user
        keys.keyset.invalidate()


def login(driver: Any, base: str, next_path: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/admin/login/?next={next_path}")
    driver.find_element(By.ID, "id_username").send_keys("root")
    driver.find_element(By.ID, "id_password").send_keys("pw-root-123456")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def exchange(base: str, agent: Agent, token: str) -> httpx.Response:
    return httpx.post(
        f"{base}/o/token/",
        data={
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": RESOURCE,
        },
        auth=(agent.client_id, agent.client_secret),
        timeout=30,
    )


def test_admin_registers_an_agent_and_rule_and_the_agent_exchanges(browser, site, client):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from delegation_idp.models import Party

    base, user = site
    login(browser, base, "/admin/delegation_idp/party/add/")
    browser.find_element(By.ID, "id_uri").send_keys(AGENT_URI)
    browser.find_element(By.ID, "id_name").send_keys("Browser agent")
    Select(browser.find_element(By.ID, "id_kind")).select_by_value("agent")
    browser.find_element(By.ID, "id_redirect_uris").send_keys(f"{AGENT_URI}/callback")
    # Its first delegation rule, inline: directly from a user token, to the resource server.
    browser.find_element(By.ID, "id_delegation_rules-0-description").send_keys(
        "read tasks on the resource server"
    )
    Select(browser.find_element(By.ID, "id_delegation_rules-0-audiences_from")).select_by_visible_text(
        f"Resource server <{RESOURCE}>"
    )
    browser.find_element(By.ID, "id_delegation_rules-0-audiences_add").click()
    browser.find_element(By.ID, "id_delegation_rules-0-max_scope").send_keys("tasks.read")
    browser.find_element(By.ID, "id_delegation_rules-0-allow_direct_from_user").click()
    browser.find_element(By.NAME, "_save").click()

    # The one-time secret page.
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "client-secret"))
    client_id = browser.find_element(By.ID, "client-id").text
    secret = browser.find_element(By.ID, "client-secret").text
    assert client_id and len(secret) >= 40
    party = Party.objects.get(uri=AGENT_URI)
    assert party.application.client_id == client_id
    assert secret not in party.application.client_secret, "only a hash is stored"
    browser.find_element(By.ID, "continue-link").click()
    assert secret not in browser.page_source, "the secret is never shown again"
    assert party.delegation_rules.get().max_scope == "tasks.read"

    # The agent gets a user token (authorization code + PKCE) and exchanges it over HTTP.
    agent = Agent("browser-agent", client_id, secret, AGENT_URI, f"{AGENT_URI}/callback")
    code, verifier = authorize_code(client, agent, user, "tasks.read")
    response = httpx.post(
        f"{base}/o/token/",
        data=code_form(agent, code, verifier),
        auth=(client_id, secret),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    user_token = response.json()["access_token"]
    response = exchange(base, agent, user_token)
    assert response.status_code == 200, response.text
    claims = decode(response.json()["access_token"])[1]
    assert claims["iss"] == base and claims["aud"] == RESOURCE
    assert claims["act"] == {"sub": AGENT_URI} and claims["scope"] == "tasks.read"

    # Second run: the admin deletes the rule in the browser; the same exchange is refused.
    browser.find_element(By.ID, "id_delegation_rules-0-DELETE").click()
    browser.find_element(By.NAME, "_save").click()
    # Wait for the next page rather than reading the one being left.
    WebDriverWait(browser, 15).until(lambda d: "was changed successfully" in d.page_source)
    assert not party.delegation_rules.exists()
    response = exchange(base, agent, user_token)
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"
