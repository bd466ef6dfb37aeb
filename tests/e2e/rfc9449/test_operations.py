"""What operators see of DPoP: the "DPoP required" mark in the admin (a real browser) and in
``createagent``, each hop's key in the lineage tree, and the system checks."""

from __future__ import annotations

import json
from io import StringIO

import httpx
import pytest
from django.core.checks import run_checks
from django.core.management import call_command

from delegation_idp.models import Party, TokenLineage
from tests.helpers import decode
from tests.policy.test_browser import browser, login, site  # noqa: F401  (fixtures)

from .conftest import Prover

WORKER = "https://dpop-worker.example.com"


@pytest.mark.integration
@pytest.mark.browser
def test_admin_marks_a_party_dpop_required_and_sees_its_key_in_lineage(browser, site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from delegation_idp.provider.agents import register_party

    base, _user = site
    reg = register_party(WORKER, "DPoP worker", Party.AGENT)
    token_url = f"{base}/o/token/"
    auth = (reg.client_id, reg.client_secret)
    assert httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=auth).status_code == 200

    login(browser, base, f"/admin/delegation_idp/party/{reg.party.pk}/change/")
    box = browser.find_element(By.ID, "id_dpop_required")
    assert not box.is_selected()
    box.click()
    browser.find_element(By.NAME, "_save").click()
    WebDriverWait(browser, 15).until(lambda d: "was changed successfully" in d.page_source)
    assert Party.objects.get(pk=reg.party.pk).dpop_required

    refused = httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=auth)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    key = Prover()
    bound = httpx.post(
        token_url,
        data={"grant_type": "client_credentials"},
        auth=auth,
        headers={"DPoP": key.proof(url=token_url)},
    )
    assert bound.status_code == 200, bound.text
    assert bound.json()["token_type"] == "DPoP"
    row = TokenLineage.objects.get(jti=decode(bound.json()["access_token"])[1]["jti"])
    browser.get(f"{base}/admin/delegation_idp/tokenlineage/{row.pk}/tree/")
    cell = browser.find_element(By.CSS_SELECTOR, f'li[data-jti="{row.jti}"] > .idp-node .jkt')
    assert cell.text == key.jkt


def test_createagent_marks_dpop_required(db):
    out = StringIO()
    call_command("createagent", WORKER, "--dpop-required", "--json", stdout=out)
    assert json.loads(out.getvalue())["dpop_required"] is True
    assert Party.objects.get(uri=WORKER).dpop_required
    call_command("createagent", "https://bearer-ok.example.com", "--json", stdout=StringIO())
    assert not Party.objects.get(uri="https://bearer-ok.example.com").dpop_required


def test_lineage_tree_names_bearer_tokens(cast, chain, client, django_user_model):
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "admin-pw-123")
    client.force_login(admin)
    row = TokenLineage.objects.get(jti=decode(chain[0])[1]["jti"])
    page = client.get(f"/admin/delegation_idp/tokenlineage/{row.pk}/tree/")
    assert page.status_code == 200 and b'<span class="jkt">bearer</span>' in page.content


def _ids() -> set[str]:
    return {m.id for m in run_checks(include_deployment_checks=True) if m.id.startswith("delegation_idp.")}


def test_e025_refuses_symmetric_proof_algorithms(settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_SIGNING_ALGORITHMS": ["ES256", "HS256"]}
    assert "delegation_idp.E025" in _ids()
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_SIGNING_ALGORITHMS": []}
    assert "delegation_idp.E025" in _ids()
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_SIGNING_ALGORITHMS": ["ES256"]}
    assert "delegation_idp.E025" not in _ids()


def test_e026_and_w105_on_the_replay_cache(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_REPLAY_CACHE_ALIAS": "dummy"}
    assert "delegation_idp.E026" in _ids()
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_REPLAY_CACHE_ALIAS": "missing"}
    assert "delegation_idp.E026" in _ids()
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "DPOP_REPLAY_CACHE_ALIAS": "default"}
    ids = _ids()
    assert "delegation_idp.E026" not in ids and "delegation_idp.W105" in ids
