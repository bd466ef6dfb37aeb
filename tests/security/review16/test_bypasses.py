"""Re-review of the review16 fixes: bypasses of the same holes by other paths."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import edited_consent_form


def test_a_denied_consent_post_never_redirects_to_an_unregistered_uri(cast, client):
    client.force_login(cast.user)
    response = client.post("/o/authorize/", edited_consent_form(cast))
    assert not response.get("Location", "").startswith("https://evil.example.net"), response["Location"]


# F6 bypass 2: DOT's own invalid_target refusal of a malformed resource in the form.
def test_a_malformed_resource_on_the_consent_post_never_redirects_to_an_unregistered_uri(cast, client):
    client.force_login(cast.user)
    response = client.post(
        "/o/authorize/", edited_consent_form(cast, resource="not-a-url", allow="Authorize")
    )
    assert not response.get("Location", "").startswith("https://evil.example.net"), response["Location"]


# F4's closest-owner rule is not applied where the exchange checks the subject's audience
# (rfc8693/exchange.py _subject): a party whose shorter prefix covers another party's
# resource exchanges a token addressed to that other party.
def test_a_shorter_prefix_does_not_make_another_partys_token_a_subject(cast, user_token, exchange):
    from delegation_idp.models import AuditEvent, Party
    from delegation_idp.provider.agents import allow
    from tests.helpers import decode

    mcp = Party.objects.get(uri=cast["mcp-server1"].uri)
    agent2 = Party.objects.get(uri=cast["agent2"].uri)
    agent1 = Party.objects.get(uri=cast["agent1"].uri)
    rs = Party.objects.get(uri=cast.resource_server)
    mcp.resource_prefixes = "https://gateway.example.com/"  # the gateway, the whole origin
    mcp.save()
    agent2.uri = "https://gateway.example.com/agent2"  # served behind it
    agent2.save()
    allow(mcp, [rs], cast.scope, upstream=[agent1], description="mcp for agent1's task")
    # agent1 hands the user's task to agent2 at its resource behind the gateway.
    to_agent2 = exchange("agent1", user_token, "https://gateway.example.com/agent2")
    assert to_agent2.status_code == 200, to_agent2.content
    token = to_agent2.json()["access_token"]
    assert decode(token)[1]["aud"] == "https://gateway.example.com/agent2"
    # The gateway sees the request pass and exchanges agent2's token as its own subject.
    stolen = exchange("mcp-server1", token, cast.resource_server)
    assert stolen.status_code == 400, decode(stolen.json()["access_token"])[1]
    assert AuditEvent.objects.order_by("-id").first().reason == "subject_wrong_audience"


# RFC 7592: the new checks run before django-oauth-toolkit authenticates the registration
# access token, so a caller with no token learns which client ids an admin governs (403
# rather than DOT's 401, which hides whether a client exists) and which hosts the
# registration rules admit (400 invalid_redirect_uri rather than 401), and writes audit
# records at will.
def _registered(cast: Any, client: Any) -> dict[str, Any]:
    import json

    from delegation_idp.models import Party, RegistrationRule

    RegistrationRule.objects.create(via=Party.BY_DCR, hosts="tools.example.org", max_scope="tasks.read")
    client.force_login(cast.user)
    body = {"redirect_uris": ["https://tools.example.org/cb"], "client_name": "tool"}
    created = client.post("/o/register/", json.dumps(body), content_type="application/json")
    client.logout()
    assert created.status_code == 201, created.content
    return created.json()


@pytest.mark.parametrize("method", ["put", "delete"])
def test_rfc7592_without_a_token_does_not_reveal_a_promoted_client(cast, client, method):
    from delegation_idp.models import AuditEvent, Party
    from delegation_idp.provider import self_registered

    data = _registered(cast, client)
    self_registered.promote(Party.objects.get(application__client_id=data["client_id"]))
    before = AuditEvent.objects.count()
    response = getattr(client, method)(
        f"/o/register/{data['client_id']}/", "{}", content_type="application/json"
    )
    assert response.status_code == 401, (response.status_code, response.content)
    assert AuditEvent.objects.count() == before


def test_rfc7592_without_a_token_does_not_reveal_the_rules_hosts(cast, client):
    import json

    data = _registered(cast, client)
    body = {"redirect_uris": ["https://evil.example.net/cb"], "client_name": "tool"}
    response = client.put(
        f"/o/register/{data['client_id']}/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 401, (response.status_code, response.content)


# The redirect-URI refusal added to authorize_resources (provider/authorization.py:135) is
# the one refusal of that method written to no audit record.
def test_a_consent_post_with_an_unregistered_redirect_uri_is_audited(cast, client):
    from delegation_idp.models import AuditEvent

    client.force_login(cast.user)
    before = AuditEvent.objects.count()
    response = client.post("/o/authorize/", edited_consent_form(cast, allow="Authorize"))
    assert response.status_code == 400, response.status_code
    assert AuditEvent.objects.count() > before


# F4 by another spelling of the same URL: _overlaps compares strings, so the default port
# (or any other equivalent spelling) slips past it.
def test_a_metadata_url_spelled_with_the_default_port_is_not_taken_over(cast, fetcher, login):
    from delegation_idp.models import Party, RegistrationRule
    from delegation_idp.provider.self_registered import RegistrationRulePermission

    rs = Party.objects.get(uri=cast.resource_server)
    rs.resource_prefixes = "https://api.example.com/tasks/"
    rs.save()
    RegistrationRule.objects.create(via=Party.BY_CIMD, hosts=".example.com", max_scope="tasks.read")
    assert not RegistrationRulePermission().has_permission(None, "https://api.example.com/tasks")
    assert not RegistrationRulePermission().has_permission(None, "https://api.example.com:443/tasks")
