"""The rule change form's approval fieldset (OpenID CIBA) and the rule list's approval column
in a real browser (headless Chromium, 1280 px): there, readable, nothing cut off or scrolling
sideways; screenshots under browser-screenshots/."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider.agents import allow, register_party
from tests.policy.test_admin_parties_browser import PASSWORD, check, sign_in
from tests.support.browser import browser  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def site(live_server: Any, transactional_db: Any, django_user_model: Any) -> dict[str, Any]:
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    orchestrator = register_party(
        "https://orchestrator.agents.example.com", "Travel orchestrator", Party.AGENT
    ).party
    payments = register_party("https://payments.example.com", "Payments API", Party.RESOURCE_SERVER).party
    rule = allow(
        orchestrator,
        [payments],
        "payments.read payments.initiate",
        direct_from_user=True,
        description="Pay for the traveller's bookings",
    )
    DelegationRule.objects.filter(pk=rule.pk).update(
        approval=DelegationRule.APPROVAL_ABOVE,
        approval_scopes="payments.initiate",
        approval_lifetime=600,
        approval_reuse_seconds=300,
    )
    return {"base": live_server.url, "rule": rule}


def test_the_rule_form_shows_the_approval_fieldset_and_the_list_its_column(browser, site):  # noqa: F811
    from selenium.webdriver.common.by import By

    sign_in(browser, site["base"], "root", PASSWORD)
    browser.get(f"{site['base']}/admin/delegation_idp/delegationrule/{site['rule'].pk}/change/")
    check(browser, "rule-approval-fieldset", "The user's approval (OpenID CIBA)", "approval_required")
    assert browser.find_element(By.ID, "id_approval_scopes").get_attribute("value") == "payments.initiate"
    assert browser.find_element(By.ID, "id_approval").get_attribute("value") == "above"
    browser.get(f"{site['base']}/admin/delegation_idp/delegationrule/")
    check(
        browser,
        "rules-list-approval",
        "Pay for the traveller's bookings",
        "needs the user's approval for payments.initiate",
    )
