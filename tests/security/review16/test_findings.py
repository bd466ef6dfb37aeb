"""Findings of the independent review of issue 16 (RFC 8707 at the authorization endpoint,
self-registered clients, RFC 9728): each test failed before its fix."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from delegation_idp.models import Party, RegistrationRule
from tests.helpers import decode

from .conftest import edited_consent_form, pkce

# -- F1: approval_prompt=auto skips the consent page for a new RFC 8707 resource -------------


def test_auto_approval_does_not_skip_consent_for_another_partys_resource(cast, client, authorize, redeem):
    agent1, agent2 = cast["agent1"], cast["agent2"]
    # The user once consented to agent1's own token (no resource).
    first = redeem(agent1, authorize(agent1))
    assert first.status_code == 200, first.content
    # agent1 now sends the user to /o/authorize/ for agent2's resource with approval_prompt=auto.
    client.force_login(cast.user)
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": agent1.client_id,
        "redirect_uri": agent1.redirect_uri,
        "scope": cast.scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": agent2.uri,
        "approval_prompt": "auto",
    }
    response = client.get(f"/o/authorize/?{urlencode(params)}")
    client.logout()
    if response.status_code == 302:
        code = parse_qs(urlsplit(response["Location"]).query)["code"][0]
        token = redeem(agent1, type("A", (), {"code": code, "verifier": verifier})())
        aud = decode(token.json()["access_token"])[1]["aud"]
        # The user never saw agent2 named on a consent page.
        pytest.fail(f"no consent page, yet a token for aud={aud!r}")
    assert response.status_code == 200


# -- F2: RFC 7592 PUT moves a DCR client off the hosts its registration rule names ---------


def _register(client: Any, redirect_uris: list[str], **extra: Any) -> Any:
    body = {"redirect_uris": redirect_uris, "client_name": "tool", **extra}
    return client.post("/o/register/", json.dumps(body), content_type="application/json")


def test_dcr_update_cannot_leave_the_registration_rules_hosts(cast, client):
    rule = RegistrationRule.objects.create(
        via=Party.BY_DCR, hosts="tools.example.org", max_scope="tasks.read"
    )
    rule.audiences.set([Party.objects.get(uri=cast["mcp-server1"].uri)])
    client.force_login(cast.user)
    created = _register(client, ["https://tools.example.org/cb"])
    assert created.status_code == 201, created.content
    data = created.json()
    client.logout()
    # A new registration for evil.example.net is refused (401) ...
    # ... but the management endpoint moves the existing client there.
    updated = client.put(
        f"/o/register/{data['client_id']}/",
        json.dumps({"redirect_uris": ["https://evil.example.net/cb"], "client_name": "tool"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {data['registration_access_token']}",
    )
    assert updated.status_code == 400, updated.content
    assert updated.json()["error"] == "invalid_redirect_uri"
    assert updated["Cache-Control"] == "no-store"
    from oauth2_provider.models import get_application_model

    app = get_application_model().objects.get(client_id=data["client_id"])
    assert app.redirect_uris == "https://tools.example.org/cb"  # unchanged


# -- F3: a confidential DCR client reaches a rule's audience by exchange, unseen by the user --


def test_a_self_registered_client_does_not_exchange(cast, client, token_endpoint):
    mcp = cast["mcp-server1"].uri
    rule = RegistrationRule.objects.create(
        via=Party.BY_DCR, hosts="tools.example.org", max_scope="tasks.read"
    )
    rule.audiences.set([Party.objects.get(uri=mcp)])
    client.force_login(cast.user)
    created = _register(
        client, ["https://tools.example.org/cb"], token_endpoint_auth_method="client_secret_basic"
    )
    assert created.status_code == 201, created.content
    reg = created.json()
    basic = "Basic " + base64.b64encode(f"{reg['client_id']}:{reg['client_secret']}".encode()).decode()
    # The user consents to a token "addressed to this client only" (no resource).
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": reg["client_id"],
        "redirect_uri": "https://tools.example.org/cb",
        "scope": "tasks.read",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = client.get(f"/o/authorize/?{urlencode(params)}")
    assert b"addressed to this client only" in page.content
    consented = client.post(f"/o/authorize/?{urlencode(params)}", {**params, "allow": "Authorize"})
    code = parse_qs(urlsplit(consented["Location"]).query)["code"][0]
    client.logout()
    own = token_endpoint(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://tools.example.org/cb",
            "code_verifier": verifier,
        },
        HTTP_AUTHORIZATION=basic,
    )
    assert own.status_code == 200, own.content
    exchanged = token_endpoint(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": own.json()["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": mcp,
        },
        HTTP_AUTHORIZATION=basic,
    )
    # docs/self-registered-clients.md: "public clients never exchange"; the consent page said
    # the token is for this client only. A self-registered client must not reach mcp-server1 so.
    assert exchanged.status_code == 400, decode(exchanged.json()["access_token"])[1]
    assert exchanged.json()["error"] == "unauthorized_client"
    from delegation_idp.models import AuditEvent

    assert AuditEvent.objects.order_by("-id").first().reason == "not_an_agent"


# -- F4: a resource server with RESOURCE_URL on a path still takes tokens for the bare origin --


def test_a_path_resource_url_does_not_accept_the_bare_origin(settings):
    from delegation_idp.resource_server import metadata

    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "RESOURCE_SERVER_URI": "https://tasks.internal",
        "RESOURCE_URL": "https://api.example.com/tasks/",
    }
    urls = metadata.resource_urls_for(None)
    assert "https://api.example.com" not in urls, urls


# -- F5: a CIMD client whose metadata URL is a resource prefix of another party owns it ------


def test_a_metadata_url_under_another_partys_prefix_is_not_taken_over(cast, fetcher, login, redeem_public):
    rs = Party.objects.get(uri=cast.resource_server)
    rs.resource_prefixes = "https://api.example.com/tasks/"  # the URL its clients call
    rs.save()
    evil = "https://api.example.com/tasks"  # a JSON document the attacker can make appear there
    fetcher.documents[evil] = {**fetcher.documents[next(iter(fetcher.documents))], "client_id": evil}
    rule = RegistrationRule.objects.create(via=Party.BY_CIMD, hosts=".example.com", max_scope="tasks.read")
    rule.audiences.set([Party.objects.get(uri=cast["mcp-server1"].uri)])  # nothing about rs
    authorization = login(evil, resource="https://api.example.com/tasks/")
    # Refused before any fetch: the URL covers the resource server's prefix.
    assert authorization.response.status_code == 400
    assert fetcher.fetched == []
    from oauth2_provider.models import get_application_model

    assert not get_application_model().objects.filter(client_id=evil).exists()


# -- F6: the consent POST's refusal redirects to a redirect_uri nobody validated -------------


def test_a_refusal_on_the_consent_post_never_redirects_to_an_unregistered_uri(cast, client):
    client.force_login(cast.user)
    form = edited_consent_form(
        cast,
        resource=cast["mcp-server1"].uri,  # agent1's rule does not name it: refused
        allow="Authorize",
    )
    response = client.post("/o/authorize/", form)
    assert not response.get("Location", "").startswith("https://evil.example.net"), response["Location"]


# -- F7: a deeply nested registration body is a 500 ------------------------------------------


def test_a_deeply_nested_registration_request_is_a_json_error_not_a_500(cast, client):
    RegistrationRule.objects.create(via=Party.BY_DCR, hosts="*", max_scope="tasks.read")
    client.force_login(cast.user)
    client.raise_request_exception = False
    response = client.post("/o/register/", "[" * 10_000, content_type="application/json")
    assert response.status_code == 400, response.status_code
    assert response.json()["error"] == "invalid_client_metadata"
    assert response["Cache-Control"] == "no-store"
    from delegation_idp.models import AuditEvent

    refused = AuditEvent.objects.order_by("-id").first()
    assert (refused.event, refused.decision, refused.reason) == (
        "registration",
        "denied",
        "client_metadata_invalid",
    )
