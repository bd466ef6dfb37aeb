"""Django admin for parties and delegation rules: registration with a one-time secret,
identity URI validation, rule editing, filters, actions, the read-only rules page and
the "try a delegation" page."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp.models import AuditEvent, DelegationRule, Party, TokenLineage, validate_identity_uri

ADD_URL = "/admin/delegation_idp/party/add/"
TRY_URL = "/admin/delegation_idp/party/try/"


def inline_management(total: int = 0) -> dict[str, Any]:
    return {
        "delegation_rules-TOTAL_FORMS": str(total),
        "delegation_rules-INITIAL_FORMS": "0",
        "delegation_rules-MIN_NUM_FORMS": "0",
        "delegation_rules-MAX_NUM_FORMS": "1000",
    }


def add_party(admin_client, **fields: Any):
    data = {
        "kind": Party.AGENT,
        "enabled": "on",
        "contact": "",
        "resource_prefixes": "",
        **inline_management(),
    }
    data.update(fields)
    return admin_client.post(ADD_URL, data)


def secret_of(response) -> tuple[str, str]:
    text = response.content.decode()
    client_id = re.search(r'id="client-id">([^<]+)<', text).group(1)
    secret = re.search(r'id="client-secret">([^<]+)<', text).group(1)
    return html.unescape(client_id), html.unescape(secret)


# -- identity URIs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://agent1.example.com",
        "https://agent1.example.com/agents/7",
        "https://agent1.example.com:8443",
        "http://localhost:8000",
        "http://127.0.0.1:9000/agent",
        "http://[::1]:8080",
    ],
)
def test_identity_uri_accepted(uri):
    validate_identity_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "http://agent1.example.com",  # http only for loopback
        "http://10.0.0.1",
        "ftp://agent1.example.com",
        "agent1.example.com",
        "/agents/1",
        "https://",
        "https://agent1.example.com?x=1",
        "https://agent1.example.com#frag",
        "https://user:pw@agent1.example.com",
        " https://agent1.example.com",
        "https://agent1.example.com/a b",
        "https://agént.example.com",
        "https://agent1.example.com/\x00",
        "https://agent1.example.com|https://x",
    ],
)
def test_identity_uri_refused(uri):
    with pytest.raises(ValidationError):
        validate_identity_uri(uri)


# -- registering in the admin ------------------------------------------------------------


def test_adding_an_agent_creates_its_client_and_shows_the_secret_once(admin_client, token_endpoint):
    from tests.conftest import Agent

    response = add_party(admin_client, uri="https://new-agent.example.com", name="New agent")
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    client_id, secret = secret_of(response)
    party = Party.objects.get(uri="https://new-agent.example.com")
    app = party.application
    assert app is not None and app.client_id == client_id
    assert app.client_type == "confidential"
    # Stored only in hashed form.
    assert app.client_secret != secret and secret not in app.client_secret
    assert len(secret) >= 40
    # The secret works: the new agent authenticates (client credentials, no redirect URIs).
    agent = Agent("new", client_id, secret, party.uri, "")
    assert token_endpoint({"grant_type": "client_credentials"}, agent).status_code == 200
    # ... and is never shown again.
    change = admin_client.get(reverse("admin:delegation_idp_party_change", args=[party.pk]))
    assert change.status_code == 200 and secret not in change.content.decode()
    assert secret not in admin_client.get("/admin/delegation_idp/party/").content.decode()


def test_adding_an_agent_with_redirect_uris_uses_the_authorization_code_flow(admin_client):
    response = add_party(
        admin_client,
        uri="https://coder.example.com",
        name="Coder",
        redirect_uris="https://coder.example.com/callback",
    )
    assert response.status_code == 200
    app = Party.objects.get(uri="https://coder.example.com").application
    assert app.authorization_grant_type == "authorization-code"
    assert app.redirect_uris == "https://coder.example.com/callback"


def test_adding_a_disabled_mcp_server(admin_client):
    response = add_party(
        admin_client, uri="https://mcp.example.com", name="MCP", kind=Party.MCP_SERVER, enabled=""
    )
    assert response.status_code == 200
    party = Party.objects.get(uri="https://mcp.example.com")
    assert party.kind == Party.MCP_SERVER and not party.enabled and party.application is not None


def test_adding_a_resource_server_creates_no_client(admin_client):
    response = add_party(
        admin_client,
        uri="https://api.example.com",
        name="API",
        kind=Party.RESOURCE_SERVER,
        resource_prefixes="https://api.example.com/v1\nhttps://files.example.com",
    )
    assert response.status_code == 302
    party = Party.objects.get(uri="https://api.example.com")
    assert party.application is None
    assert party.prefixes() == ["https://api.example.com/v1", "https://files.example.com"]


@pytest.mark.parametrize(
    "fields",
    [
        {"uri": "http://agent.example.com"},
        {"uri": "https://agent.example.com?q=1"},
        {"uri": "https://agent.example.com", "redirect_uris": "http://agent.example.com/cb"},
        {"uri": "https://agent.example.com", "resource_prefixes": "http://insecure.example.com"},
    ],
    ids=["http", "query", "insecure-redirect", "insecure-prefix"],
)
def test_add_form_refuses_invalid_uris_and_creates_nothing(admin_client, fields):
    Application = get_application_model()
    before = Application.objects.count()
    response = add_party(admin_client, name="Bad", **fields)
    assert response.status_code == 200 and b"errornote" in response.content
    assert not Party.objects.exists() and Application.objects.count() == before


def test_duplicate_uri_is_refused(admin_client):
    assert add_party(admin_client, uri="https://dup.example.com", name="One").status_code == 200
    response = add_party(admin_client, uri="https://dup.example.com", name="Two")
    assert b"errornote" in response.content and Party.objects.count() == 1


def test_agent_and_rule_registered_together(admin_client):
    target = Party.objects.create(uri="https://rs.example.com", name="RS", kind=Party.RESOURCE_SERVER)
    data = {
        **inline_management(1),
        "delegation_rules-0-description": "read tasks",
        "delegation_rules-0-enabled": "on",
        "delegation_rules-0-audiences": [str(target.pk)],
        "delegation_rules-0-max_scope": "  tasks.read   tasks.write ",
        "delegation_rules-0-allow_direct_from_user": "on",
    }
    response = add_party(admin_client, uri="https://with-rule.example.com", name="With rule", **data)
    assert response.status_code == 200, response.content[:3000]
    rule = DelegationRule.objects.get()
    assert rule.actor.uri == "https://with-rule.example.com"
    assert [p.uri for p in rule.audiences.all()] == [target.uri]
    assert rule.max_scope == "tasks.read tasks.write" and rule.allow_direct_from_user


@pytest.mark.parametrize(
    "rule,message",
    [
        ({"max_scope": "tasks.read"}, "upstream actors"),
        (
            {
                "max_scope": "tasks.read",
                "allow_direct_from_user": "on",
                "valid_from_0": "2026-02-01",
                "valid_from_1": "00:00:00",
                "valid_until_0": "2026-01-01",
                "valid_until_1": "00:00:00",
            },
            "must end after",
        ),
        ({"max_scope": 'tasks."read"', "allow_direct_from_user": "on"}, "scope tokens"),
    ],
    ids=["never-matches", "window", "scope-syntax"],
)
def test_rule_form_refuses_rules_that_make_no_sense(admin_client, rule, message):
    target = Party.objects.create(uri="https://rs.example.com", name="RS", kind=Party.RESOURCE_SERVER)
    actor = Party.objects.create(uri="https://a.example.com", name="A")
    data = {"actor": str(actor.pk), "audiences": [str(target.pk)], "enabled": "on", **rule}
    response = admin_client.post("/admin/delegation_idp/delegationrule/add/", data)
    assert response.status_code == 200 and message in response.content.decode()
    assert not DelegationRule.objects.exists()


# -- lists, filters, search, actions ---------------------------------------------------------


@pytest.fixture
def parties(world):
    a1, a2 = world.agent("alpha"), world.agent("beta")
    world.resource("store")
    Party.objects.filter(uri=a2.uri).update(enabled=False, contact="ops@example.com")
    world.rule(a1, ["store"], "tasks.read", direct=True, description="alpha reads the store")
    world.rule(a2, [a1], "profile", upstream=[a1], enabled=False, description="beta back to alpha")
    return a1, a2


def names(response) -> set[str]:
    return {p.name for p in response.context["cl"].result_list}


@pytest.mark.parametrize(
    "query,expected",
    [
        ("", {"alpha", "beta", "store"}),
        ("kind__exact=resource_server", {"store"}),
        ("enabled__exact=0", {"beta"}),
        ("has_client=no", {"store"}),
        ("has_client=yes", {"alpha", "beta"}),
        ("q=ops%40example", {"beta"}),
        ("q=store.example.com", {"store"}),
    ],
)
def test_party_list_filters_and_search(admin_client, parties, query, expected):
    response = admin_client.get(f"/admin/delegation_idp/party/?{query}")
    assert response.status_code == 200
    assert names(response) == expected


@pytest.mark.parametrize(
    "query,expected",
    [
        ("enabled__exact=1", {"alpha reads the store"}),
        ("allow_direct_from_user__exact=0", {"beta back to alpha"}),
        ("q=store.example.com", {"alpha reads the store"}),
        ("q=profile", {"beta back to alpha"}),
    ],
)
def test_rule_list_filters_and_search(admin_client, parties, query, expected):
    response = admin_client.get(f"/admin/delegation_idp/delegationrule/?{query}")
    assert response.status_code == 200
    assert {r.description for r in response.context["cl"].result_list} == expected


def test_disable_action_stops_the_agent_and_revokes_its_tokens(admin_client, world, parties):
    a1, _ = parties
    token = world.user_token(a1)
    party = world.party(a1)
    response = admin_client.post(
        "/admin/delegation_idp/party/", {"action": "disable", "_selected_action": [party.pk]}, follow=True
    )
    assert response.status_code == 200
    party.refresh_from_db()
    assert not party.enabled
    assert TokenLineage.objects.filter(revoked_at__isnull=True).count() == 0
    assert world.exchange(a1, token, "https://store.example.com").json()["error"] == "unauthorized_client"
    admin_client.post("/admin/delegation_idp/party/", {"action": "enable", "_selected_action": [party.pk]})
    party.refresh_from_db()
    assert party.enabled


def test_rule_enable_disable_actions(admin_client, parties):
    ids = list(DelegationRule.objects.values_list("pk", flat=True))
    admin_client.post("/admin/delegation_idp/delegationrule/", {"action": "disable", "_selected_action": ids})
    assert not DelegationRule.objects.filter(enabled=True).exists()
    admin_client.post("/admin/delegation_idp/delegationrule/", {"action": "enable", "_selected_action": ids})
    assert not DelegationRule.objects.filter(enabled=False).exists()


# -- read-only rules page ---------------------------------------------------------------------


def test_rules_page_lists_what_an_agent_is_subject_to(admin_client, parties):
    a1, _ = parties
    party = Party.objects.get(uri=a1.uri)
    response = admin_client.get(reverse("admin:delegation_idp_party_rules", args=[party.pk]))
    assert response.status_code == 200
    as_actor = response.context["as_actor"]
    assert [r["rule"].description for r in as_actor] == ["alpha reads the store"]
    assert as_actor[0]["audiences"] == ["https://store.example.com"] and as_actor[0]["in_effect"]
    assert [r["rule"].description for r in response.context["as_audience"]] == ["beta back to alpha"]
    assert [r["rule"].description for r in response.context["as_upstream"]] == ["beta back to alpha"]
    assert b"<form" not in response.content.split(b'id="content-main"')[1], "the page is read-only"
    change = admin_client.get(reverse("admin:delegation_idp_party_change", args=[party.pk]))
    assert reverse("admin:delegation_idp_party_rules", args=[party.pk]).encode() in change.content


def test_admin_pages_need_staff(client, parties):
    response = client.get(TRY_URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    party = Party.objects.first()
    assert client.get(reverse("admin:delegation_idp_party_rules", args=[party.pk])).status_code == 302


def test_staff_without_view_permission_is_refused(client, parties, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client.force_login(staff)
    party = Party.objects.first()
    assert client.get(TRY_URL).status_code == 403
    assert client.get(reverse("admin:delegation_idp_party_rules", args=[party.pk])).status_code == 403


# -- try a delegation ------------------------------------------------------------------------------


def state() -> tuple:
    """Everything a try must not change."""
    return (
        list(Party.objects.values_list("pk", "enabled", "updated")),
        list(DelegationRule.objects.values_list("pk", "enabled", "updated")),
        AuditEvent.objects.count(),
        TokenLineage.objects.count(),
        get_access_token_model().objects.count(),
    )


def try_it(admin_client, actor: Party, audiences: list[Party], **params: Any):
    query = {
        "actor": actor.pk,
        "audiences": [p.pk for p in audiences],
        "subject_scope": "tasks.read tasks.write",
    }
    query.update(params)
    response = admin_client.get(TRY_URL, query)
    assert response.status_code == 200
    assert response.context["form"].is_valid(), response.context["form"].errors
    return response.context["result"], response


def test_try_page_form_renders_and_is_linked(admin_client, parties):
    response = admin_client.get(TRY_URL)
    assert response.status_code == 200 and response.context["result"] is None
    assert TRY_URL.encode() in admin_client.get("/admin/delegation_idp/party/").content


def test_try_page_allows_and_explains(admin_client, parties):
    a1, _ = parties
    before = state()
    result, response = try_it(
        admin_client, Party.objects.get(uri=a1.uri), [Party.objects.get(uri="https://store.example.com")]
    )
    assert result["decision"].allowed and result["reason"] == "allowed"
    assert result["granted_scope"] == "tasks.read"
    assert [o["reason"] for o in result["outcomes"]] == ["allowed"]
    assert b'id="try-reason">allowed<' in response.content
    assert state() == before, "trying changes nothing"


@pytest.mark.parametrize(
    "params,reason,error",
    [
        ({"chain": "https://beta.example.com"}, "chain_actor_disabled", "invalid_request"),
        ({"chain": "https://alpha.example.com"}, "cycle", "invalid_request"),
        ({"requested_scope": "tasks.write"}, "scope_not_permitted", "invalid_scope"),
        ({"requested_scope": "admin"}, "scope_exceeds_subject", "invalid_scope"),
        ({"may_act": '{"sub": "https://beta.example.com"}'}, "may_act_mismatch", "invalid_request"),
        ({"username": "alice", "chain": ""}, "allowed", None),
    ],
)
def test_try_page_refusals(admin_client, parties, params, reason, error):
    a1, _ = parties
    before = state()
    result, response = try_it(
        admin_client,
        Party.objects.get(uri=a1.uri),
        [Party.objects.get(uri="https://store.example.com")],
        **params,
    )
    assert result["reason"] == reason and result["error"] == error
    assert state() == before


def test_try_page_answers_what_the_token_endpoint_answers(admin_client, world, parties):
    """The page runs the real evaluator on the stored rules: same reason as the endpoint's audit record."""
    a1, a2 = parties
    Party.objects.filter(uri=a2.uri).update(enabled=True)
    token = world.user_token(a1)
    alpha, beta, store = (Party.objects.get(uri=u) for u in (a1.uri, a2.uri, "https://store.example.com"))
    for audiences, scope in (([store], ""), ([beta], ""), ([store], "tasks.write"), ([store], "tasks.read")):
        extra = {"scope": scope} if scope else {}
        world.exchange(a1, token, audiences[0], **extra)
        endpoint_reason = AuditEvent.objects.order_by("-id").first().reason
        result, _ = try_it(admin_client, alpha, audiences, requested_scope=scope, username="alice")
        assert result["reason"] == endpoint_reason, (audiences, scope)


def test_try_page_rejects_unknown_user(admin_client, parties):
    a1, _ = parties
    response = admin_client.get(
        TRY_URL,
        {
            "actor": Party.objects.get(uri=a1.uri).pk,
            "audiences": [Party.objects.first().pk],
            "subject_scope": "x",
            "username": "nobody",
        },
    )
    assert response.context["result"] is None and "username" in response.context["form"].errors
