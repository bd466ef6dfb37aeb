"""Clients that register themselves are governed: admitted only where a registration rule
names their host, a registered party marked with how it registered, never broader than the
registration rules, audited with their metadata URL, and disabled or promoted in the admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from oauth2_provider.models import get_application_model

from delegation_idp.models import AuditEvent, DelegationRule, Party, RegistrationRule
from delegation_idp.provider import self_registered
from tests.helpers import assert_oauth_error, decode, snapshot

from .conftest import CLIENT_URL, REDIRECT


def events(event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=event).order_by("id"))


# -- admission ----------------------------------------------------------------------------


@pytest.mark.rfc("cimd-4")
def test_without_a_registration_rule_no_document_is_fetched(cast, fetcher, login):
    response = login(method="GET")
    assert response.response.status_code == 400  # an unknown client: no redirect to its URI
    assert fetcher.fetched == []
    assert not get_application_model().objects.filter(client_id=CLIENT_URL).exists()
    denied = events("registration")[-1]
    assert (denied.decision, denied.reason, denied.client_id) == (
        "denied",
        "registration_not_permitted",
        CLIENT_URL,
    )


@pytest.mark.rfc("cimd-4")
def test_a_host_the_rule_does_not_name_is_refused(cast, fetcher, registration_rule, login):
    other = "https://evil.example.net/client.json"
    fetcher.documents[other] = {**fetcher.documents[CLIENT_URL], "client_id": other}
    assert login(other, method="GET").response.status_code == 400
    assert fetcher.fetched == []


def test_a_metadata_url_naming_an_existing_party_is_refused(cast, fetcher, registration_rule, login):
    Party.objects.create(uri=CLIENT_URL, name="already registered", kind=Party.AGENT)
    assert login(method="GET").response.status_code == 400
    assert fetcher.fetched == []


# -- a registered party, audited ----------------------------------------------------------


@pytest.mark.rfc("cimd-4")
def test_an_admitted_client_becomes_a_party_marked_cimd_and_is_audited(
    cast, fetcher, registration_rule, login
):
    page = login(method="GET", resource=cast["mcp-server1"].uri)
    assert page.response.status_code == 200, page.response.content
    assert fetcher.fetched == [CLIENT_URL]
    html = page.response.content.decode()
    assert f"<code>{CLIENT_URL}</code> (it registered itself" in html
    assert f"<code>{cast['mcp-server1'].uri}</code> (MCP server 1)" in html
    party = Party.objects.select_related("application").get(uri=CLIENT_URL)
    assert (party.registration, party.kind, party.application.client_id) == (
        Party.BY_CIMD,
        Party.AGENT,
        CLIENT_URL,
    )
    arrived = events("registration")[-1]
    assert (arrived.decision, arrived.client_id, arrived.grant_type) == ("granted", CLIENT_URL, "cimd")


@pytest.mark.rfc("8707-2")
def test_an_admitted_client_gets_a_token_for_what_the_rule_allows(
    cast, fetcher, registration_rule, login, redeem_public
):
    mcp = cast["mcp-server1"].uri
    authorization = login(resource=mcp)
    assert "code" in authorization.params, authorization.response["Location"]
    response = redeem_public(authorization, resource=mcp)
    assert response.status_code == 200, response.content
    claims = decode(response.json()["access_token"])[1]
    assert (claims["aud"], claims["client_id"], claims["scope"]) == (mcp, CLIENT_URL, "tasks.read")
    assert "act" not in claims
    granted = AuditEvent.objects.filter(client_id=CLIENT_URL, decision="granted", event="token").last()
    assert granted is not None and granted.jti == claims["jti"]


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize(
    ("target", "scope", "error", "reason"),
    [
        ("agent2", "tasks.read", "invalid_target", "audience_not_permitted"),
        ("mcp-server1", "tasks.read tasks.write", "invalid_scope", "scope_not_permitted"),
    ],
)
def test_never_broader_than_the_registration_rules(
    cast, fetcher, registration_rule, login, target, scope, error, reason
):
    response = login(resource=cast[target].uri, scope=scope, method="GET").response
    assert response.status_code == 302 and response["Location"].startswith(REDIRECT)
    assert login(resource=cast[target].uri, scope=scope, method="GET").params["error"] == [error]
    assert events("authorization")[-1].reason == reason


def test_a_rule_of_its_own_does_not_widen_a_self_registered_party(cast, fetcher, registration_rule, login):
    login(method="GET")  # arrives
    party = Party.objects.get(uri=CLIENT_URL)
    wide = DelegationRule.objects.create(
        actor=party, max_scope="tasks.read tasks.write", allow_direct_from_user=True
    )
    wide.audiences.set([Party.objects.get(uri=cast["agent2"].uri)])
    assert login(resource=cast["agent2"].uri, method="GET").params["error"] == ["invalid_target"]


def test_disabling_the_registration_rule_governs_the_next_request(cast, fetcher, registration_rule, login):
    mcp = cast["mcp-server1"].uri
    assert login(resource=mcp, method="GET").response.status_code == 200
    RegistrationRule.objects.filter(pk=registration_rule.pk).update(enabled=False)
    assert login(resource=mcp, method="GET").params["error"] == ["invalid_target"]
    assert events("authorization")[-1].reason == "rule_not_in_effect"


# -- disabled, promoted -------------------------------------------------------------------


def test_a_disabled_self_registered_client_cannot_sign_a_user_in(cast, fetcher, registration_rule, login):
    login(method="GET")
    party = Party.objects.get(uri=CLIENT_URL)
    party.enabled = False
    party.save()
    before = snapshot()
    response = login(resource=cast["mcp-server1"].uri)
    assert response.params["error"] == ["unauthorized_client"]
    assert events("authorization")[-1].reason == "actor_disabled"
    assert snapshot() == before


def test_promotion_keeps_what_it_may_do_and_makes_its_rules_its_own(cast, fetcher, registration_rule, login):
    mcp = cast["mcp-server1"].uri
    login(method="GET")
    party = Party.objects.get(uri=CLIENT_URL)
    created = self_registered.promote(party)
    party.refresh_from_db()
    assert party.registration == Party.BY_ADMIN
    assert [(r.max_scope, r.allow_direct_from_user, [p.uri for p in r.audiences.all()]) for r in created] == [
        ("tasks.read", True, [mcp])
    ]
    RegistrationRule.objects.all().delete()  # no longer governs it
    assert login(resource=mcp, method="GET").response.status_code == 200


def test_the_admin_promotes_and_filters_self_registered_parties(
    cast, fetcher, registration_rule, login, admin_client
):
    login(method="GET")
    party = Party.objects.get(uri=CLIENT_URL)
    listed = admin_client.get("/admin/delegation_idp/party/", {"registration__exact": "cimd"})
    assert listed.status_code == 200 and CLIENT_URL.encode() in listed.content
    response = admin_client.post(
        "/admin/delegation_idp/party/",
        {"action": "promote", "_selected_action": [party.pk]},
    )
    assert response.status_code == 302
    party.refresh_from_db()
    assert party.registration == Party.BY_ADMIN
    assert DelegationRule.objects.filter(actor=party).count() == 1


def test_the_admin_refuses_a_registration_rule_with_a_bad_host(cast, admin_client):
    response = admin_client.post(
        "/admin/delegation_idp/registrationrule/add/",
        {
            "via": "cimd",
            "hosts": "mcp.example.com/path",
            "audiences": [Party.objects.get(uri=cast["mcp-server1"].uri).pk],
            "max_scope": "tasks.read",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "hosts" in response.context["adminform"].form.errors
    assert not RegistrationRule.objects.exists()


# -- RFC 7591 dynamic registration -------------------------------------------------------


def register(client: Any, redirect_uris: list[str]) -> Any:
    return client.post(
        "/o/register/",
        json.dumps({"redirect_uris": redirect_uris, "client_name": "A developer's tool"}),
        content_type="application/json",
    )


@pytest.mark.rfc("7591-3")
def test_dynamic_registration_is_governed_the_same_way(cast, client):
    client.force_login(cast.user)
    refused = register(client, ["https://tools.example.org/cb"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_redirect_uri")  # RFC 7591 3.2.2
    assert refused["Cache-Control"] == "no-store"
    assert events("registration")[-1].reason == "redirect_uri_not_permitted"
    rule = RegistrationRule.objects.create(via=Party.BY_DCR, hosts=".example.org", max_scope="tasks.read")
    rule.audiences.set([Party.objects.get(uri=cast["mcp-server1"].uri)])
    response = register(client, ["https://tools.example.org/cb"])
    assert response.status_code == 201, response.content
    client_id = response.json()["client_id"]
    party = Party.objects.get(application__client_id=client_id)
    assert party.registration == Party.BY_DCR
    assert party.uri.endswith(f"/clients/{client_id}")  # never the registrant's own choice
    assert events("registration")[-1].client_id == client_id
    # every redirect URI must be on a named host
    assert (
        register(client, ["https://tools.example.org/cb", "https://evil.example.net/cb"]).status_code == 400
    )


def test_metadata_advertises_what_is_turned_on(client, db):
    data = client.get("/.well-known/oauth-authorization-server").json()
    assert data["client_id_metadata_document_supported"] is True
    assert data["registration_endpoint"].endswith("/o/register/")


def test_the_token_endpoint_refuses_a_public_client_it_never_admitted(cast, fetcher, redeem_public):
    from .conftest import Login

    fake = Login(type("R", (), {"__getitem__": lambda self, k: f"{REDIRECT}?code=abc"})(), "v" * 43)
    response = redeem_public(fake)
    assert_oauth_error(response, 401, "invalid_client")


def test_a_consent_form_naming_no_client_is_an_error_page_not_a_500(cast, client):
    """django-oauth-toolkit reads the posted client with ``.get()``: before the guard, this
    raised ``DoesNotExist`` (a 500)."""
    client.force_login(cast.user)
    response = client.post(
        "/o/authorize/",
        {
            "client_id": "https://never-resolved.example.com/client.json",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "tasks.read",
            "state": "s",
            "allow": "Authorize",
        },
    )
    assert response.status_code == 400
    assert not response.has_header("Location")  # never a redirect to a URI nobody registered


def test_a_promoted_client_keeps_its_metadata_fresh(cast, fetcher, registration_rule, login):
    """Its own URL stays admissible (a refresh of its document), not taken by another party."""
    from delegation_idp.provider.self_registered import RegistrationRulePermission

    login(method="GET")
    self_registered.promote(Party.objects.get(uri=CLIENT_URL))
    assert RegistrationRulePermission().has_permission(None, CLIENT_URL)
    Party.objects.create(uri=CLIENT_URL.rsplit("/", 1)[0], name="another", kind=Party.AGENT)
    assert not RegistrationRulePermission().has_permission(None, CLIENT_URL)  # now it overlaps


@pytest.mark.rfc("7592-2")
def test_a_promoted_client_is_not_its_own_to_change_or_delete(cast, client):
    rule = RegistrationRule.objects.create(
        via=Party.BY_DCR, hosts="tools.example.org", max_scope="tasks.read"
    )
    rule.audiences.set([Party.objects.get(uri=cast["mcp-server1"].uri)])
    client.force_login(cast.user)
    data = register(client, ["https://tools.example.org/cb"]).json()
    client.logout()
    self_registered.promote(Party.objects.get(application__client_id=data["client_id"]))
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {data['registration_access_token']}"}
    url = f"/o/register/{data['client_id']}/"
    body = json.dumps({"redirect_uris": ["https://tools.example.org/other"], "client_name": "tool"})
    for response in (
        client.put(url, body, content_type="application/json", **bearer),
        client.delete(url, **bearer),
    ):
        assert (response.status_code, response.json()["error"]) == (403, "access_denied")
        assert response["Cache-Control"] == "no-store"
        assert events("registration")[-1].reason == "client_managed_by_admin"
    app = get_application_model().objects.get(client_id=data["client_id"])
    assert app.redirect_uris == "https://tools.example.org/cb"
