"""RFC 8707 ``resource`` at the authorization endpoint, under the delegation policy.

A user may authorize an agent (a stock MCP client, say) for another party's resource when a
delegation rule lets that agent address that party directly from a user token. The token's
``aud`` is then the resource, ``client_id`` the agent, and it carries no ``act``. Without such
a rule the authorization endpoint answers ``invalid_target`` as an error redirect (RFC 8707
section 2), writes an audit record and issues nothing.

In the seed, agent1 has a rule "directly from a user token" for agent2 (and only agent2);
agent2 has none directly from a user.
"""

from __future__ import annotations

from typing import Any

import pytest
from oauth2_provider.models import get_grant_model

from delegation_idp.models import AuditEvent, DelegationRule, Party, TokenLineage
from tests.helpers import assert_oauth_error, decode, snapshot

ISSUER = "http://testserver"


def grants() -> int:
    return get_grant_model().objects.count()


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-id").first()


@pytest.mark.rfc("8707-2")
def test_the_consent_page_names_the_resource_and_the_scope(cast, authorize):
    agent2 = cast["agent2"]
    page = authorize(cast["agent1"], agent2.uri, method="GET").response
    assert page.status_code == 200, page.content
    html = page.content.decode()
    resources = html.split('id="consent-resources">', 1)[1].split("</ul>", 1)[0]
    assert f"<code>{agent2.uri}</code> (Agent 2)" in resources  # named, not only a hidden field
    scopes = html.split('id="consent-scopes">', 1)[1].split("</ul>", 1)[0]
    for scope in cast.scope.split():
        assert f"<code>{scope}</code>" in scopes


@pytest.mark.rfc("8707-2")
def test_a_rule_lets_a_user_authorize_an_agent_for_another_partys_resource(cast, authorize, redeem):
    agent1, agent2 = cast["agent1"], cast["agent2"]
    authorization = authorize(agent1, agent2.uri)
    assert authorization.location["iss"] == [ISSUER]
    response = redeem(agent1, authorization, resource=agent2.uri)
    assert response.status_code == 200, response.content
    claims = decode(response.json()["access_token"])[1]
    assert claims["aud"] == agent2.uri
    assert claims["client_id"] == agent1.client_id
    assert claims["sub"] == cast.user.email  # the example site's SUBJECT_RESOLVER
    assert "act" not in claims
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert row.user_id == cast.user.pk and row.act is None
    assert f"|{agent2.uri}|" in row.parties  # disabling agent2 revokes it


@pytest.mark.rfc("8707-2.2")
def test_the_token_request_without_resource_gets_the_authorized_one(cast, authorize, redeem):
    agent1, agent2 = cast["agent1"], cast["agent2"]
    response = redeem(agent1, authorize(agent1, agent2.uri))
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["aud"] == agent2.uri


@pytest.mark.rfc("8707-2.2")
def test_a_resource_the_user_did_not_see_is_refused_at_the_token_endpoint(cast, authorize, redeem):
    """The rule would allow agent2, but the user consented to agent1's own token only."""
    agent1, agent2 = cast["agent1"], cast["agent2"]
    authorization = authorize(agent1)
    before = snapshot()
    response = redeem(agent1, authorization, resource=agent2.uri)
    assert_oauth_error(response, 400, "invalid_target")
    assert snapshot() == before
    assert last_event().reason == "resource_not_consented"


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("mcp-server1", "audience_not_permitted"),  # agent1's rule names agent2 only
        ("https://nowhere.example.com/api", "target_unknown"),
    ],
)
def test_without_a_rule_the_authorization_endpoint_redirects_invalid_target(
    cast, authorize, method, target, reason
):
    agent1 = cast["agent1"]
    resource = cast[target].uri if not target.startswith("https://") else target
    before, codes = snapshot(), grants()
    response = authorize(agent1, resource, method=method).response
    assert response.status_code == 302, response.content
    assert response["Location"].startswith(agent1.redirect_uri)
    params = authorize_location(response)
    assert params["error"] == ["invalid_target"]
    assert params["state"] == ["st4te"]
    assert params["iss"] == [ISSUER]
    assert "code" not in params
    assert (snapshot(), grants()) == (before, codes)
    event = last_event()
    assert (event.event, event.decision, event.error, event.reason) == (
        "authorization",
        "denied",
        "invalid_target",
        reason,
    )
    assert event.client_id == agent1.client_id and event.requested_audience == [resource]
    assert event.user_id == str(cast.user.pk)


def authorize_location(response: Any) -> dict[str, list[str]]:
    from .conftest import query

    return query(response["Location"])


@pytest.mark.rfc("8707-2")
def test_an_agent_without_a_direct_rule_is_refused(cast, authorize):
    """agent2 may address mcp-server1 only for agent1's task (an upstream rule), never directly."""
    response = authorize(cast["agent2"], cast["mcp-server1"].uri).response
    assert authorize_location(response)["error"] == ["invalid_target"]
    assert last_event().reason == "upstream_not_permitted"


@pytest.mark.rfc("8707-2")
def test_a_scope_beyond_the_rule_is_refused(cast, authorize):
    DelegationRule.objects.filter(actor__uri=cast["agent1"].uri).update(max_scope="tasks.read")
    response = authorize(cast["agent1"], cast["agent2"].uri, scope="tasks.read tasks.write").response
    assert authorize_location(response)["error"] == ["invalid_scope"]
    assert last_event().reason == "scope_not_permitted"


@pytest.mark.rfc("8707-2")
def test_a_resource_added_to_the_consent_form_is_refused(cast, authorize):
    """The consent form carries ``resource`` in a hidden field: an edited one is checked again."""
    before, codes = snapshot(), grants()
    response = authorize(cast["agent1"], form={"resource": cast["mcp-server1"].uri}).response
    assert authorize_location(response)["error"] == ["invalid_target"]
    assert (snapshot(), grants()) == (before, codes)


@pytest.mark.rfc("8707-2")
def test_a_rule_withdrawn_after_consent_refuses_the_token(cast, authorize, redeem):
    agent1, agent2 = cast["agent1"], cast["agent2"]
    authorization = authorize(agent1, agent2.uri)
    DelegationRule.objects.filter(actor__uri=agent1.uri).delete()
    before = snapshot()
    assert_oauth_error(redeem(agent1, authorization), 400, "invalid_target")
    assert snapshot() == before


@pytest.mark.rfc("8707-2")
def test_a_disabled_target_is_refused(cast, authorize):
    Party.objects.filter(uri=cast["agent2"].uri).update(enabled=False)
    response = authorize(cast["agent1"], cast["agent2"].uri).response
    assert authorize_location(response)["error"] == ["invalid_target"]


# -- what the party it was addressed to may do with it ------------------------------------


@pytest.fixture
def addressed(cast, authorize, redeem) -> str:
    """A token the user authorized agent1 to address to agent2 directly."""
    agent1 = cast["agent1"]
    response = redeem(agent1, authorize(agent1, cast["agent2"].uri))
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


@pytest.mark.rfc("8693-4.1")
def test_the_addressed_party_exchanges_it_with_the_authorizing_agent_in_act(cast, addressed, exchange):
    """agent2 passes it on under its rule for agent1's tasks, and the chain names agent1, as
    if agent1 had exchanged the user's token for agent2."""
    response = exchange("agent2", addressed, cast["mcp-server1"].uri)
    assert response.status_code == 200, response.content
    claims = decode(response.json()["access_token"])[1]
    assert claims["aud"] == cast["mcp-server1"].uri
    assert claims["act"] == {"sub": cast["agent2"].uri, "act": {"sub": cast["agent1"].uri}}
    assert claims["sub"] == cast.user.email  # the example site's SUBJECT_RESOLVER


@pytest.mark.rfc("8693-2.1")
def test_a_direct_from_user_rule_covers_the_hop_the_user_authorized(cast, addressed, exchange):
    """The user authorized agent1 -> agent2 on the consent page, so agent2's rule "directly from
    a user token" matches, and the chain still names agent1."""
    rule = DelegationRule.objects.get(actor__uri=cast["agent2"].uri)
    rule.upstream_actors.clear()
    rule.allow_direct_from_user = True
    rule.save()
    response = exchange("agent2", addressed, cast["mcp-server1"].uri)
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["act"]["act"] == {"sub": cast["agent1"].uri}


@pytest.mark.rfc("8693-2.1")
def test_only_the_addressed_party_may_exchange_it(cast, addressed, exchange):
    before = snapshot()
    response = exchange("mcp-server1", addressed, cast.resource_server)
    assert_oauth_error(response, 400, "invalid_request")
    assert snapshot() == before
    assert last_event().reason == "subject_wrong_audience"


@pytest.mark.rfc("8707-2")
def test_a_url_another_partys_longer_prefix_covers_is_that_partys(cast, authorize, redeem, exchange):
    """A resource belongs to the party whose URI or prefix covers it most closely: under agent1's
    URI but under agent2's longer prefix, it is agent2's. agent1 reaches it only by its rule for
    agent2 (the consent page names agent2), and agent2's exchange records agent1."""
    agent1 = cast["agent1"]
    shared = agent1.uri + "/shared"
    Party.objects.filter(uri=cast["agent2"].uri).update(resource_prefixes=shared)
    page = authorize(agent1, shared, method="GET").response
    assert "(Agent 2)" in page.content.decode().split('id="consent-resources">', 1)[1].split("</ul>")[0]
    response = redeem(agent1, authorize(agent1, shared))
    assert response.status_code == 200, response.content
    token = response.json()["access_token"]
    row = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
    assert f"|{cast['agent2'].uri}|" in row.parties
    onward = exchange("agent2", token, cast["mcp-server1"].uri)
    assert onward.status_code == 200, onward.content
    assert decode(onward.json()["access_token"])[1]["act"]["act"] == {"sub": agent1.uri}
    DelegationRule.objects.filter(actor__uri=agent1.uri).delete()  # no rule: agent1 may not
    assert authorize_location(authorize(agent1, shared).response)["error"] == ["invalid_target"]


@pytest.mark.rfc("8693-2.1")
def test_an_agents_own_user_token_held_by_another_agent_is_refused(cast, issue_user_token, exchange):
    own = issue_user_token("agent1")
    before = snapshot()
    assert_oauth_error(exchange("agent2", own, cast["mcp-server1"].uri), 400, "invalid_request")
    assert snapshot() == before
    assert last_event().reason == "subject_wrong_audience"


# -- the admin's dry-run page asks the same question ----------------------------------------


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize(
    ("actor", "target", "scope"),
    [
        ("agent1", "agent2", None),  # allowed
        ("agent1", "mcp-server1", None),  # audience_not_permitted
        ("agent2", "mcp-server1", None),  # upstream_not_permitted
        ("agent1", "agent2", "tasks.write"),  # scope_not_permitted once the rule is narrowed
    ],
)
def test_the_dry_run_page_answers_what_the_authorization_endpoint_answers(
    cast, authorize, admin_client, actor, target, scope
):
    DelegationRule.objects.filter(actor__uri=cast["agent1"].uri).update(max_scope="tasks.read")
    response = authorize(cast[actor], cast[target].uri, method="GET", scope=scope or "tasks.read").response
    endpoint = last_event().reason if response.status_code == 302 else "allowed"
    page = admin_client.get(
        "/admin/delegation_idp/party/try/",
        {
            "request_kind": "authorize",
            "actor": Party.objects.get(uri=cast[actor].uri).pk,
            "audiences": [Party.objects.get(uri=cast[target].uri).pk],
            "subject_scope": scope or "tasks.read",
            "username": cast.user.get_username(),
        },
    )
    assert page.status_code == 200
    assert page.context["form"].is_valid(), page.context["form"].errors
    result = page.context["result"]
    assert result["reason"] == endpoint
    assert b"carries no act" in page.content


def test_the_dry_run_page_refuses_a_chain_at_the_authorization_endpoint(cast, admin_client):
    page = admin_client.get(
        "/admin/delegation_idp/party/try/",
        {
            "request_kind": "authorize",
            "actor": Party.objects.get(uri=cast["agent2"].uri).pk,
            "audiences": [Party.objects.get(uri=cast["mcp-server1"].uri).pk],
            "subject_scope": "tasks.read",
            "chain": cast["agent1"].uri,
        },
    )
    assert not page.context["form"].is_valid()
    assert "chain" in page.context["form"].errors


@pytest.mark.rfc("8707-2.2")
def test_a_refresh_keeps_the_authorized_resource_and_asks_the_policy_again(
    cast, authorize, redeem, token_endpoint
):
    agent1, agent2 = cast["agent1"], cast["agent2"]
    first = redeem(agent1, authorize(agent1, agent2.uri)).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    again = token_endpoint(refresh, agent1)
    assert again.status_code == 200, again.content
    assert decode(again.json()["access_token"])[1]["aud"] == agent2.uri
    DelegationRule.objects.filter(actor__uri=agent1.uri).delete()
    before = snapshot()
    refresh["refresh_token"] = again.json()["refresh_token"]
    assert_oauth_error(token_endpoint(refresh, agent1), 400, "invalid_target")
    assert snapshot() == before


@pytest.mark.rfc("8707-2")
def test_auto_approval_never_skips_the_consent_page_for_a_resource(cast, client, authorize, redeem):
    """approval_prompt=auto skips the page when an earlier token covers the scopes; with a
    resource it is shown anyway, so the user sees the party named."""
    agent1 = cast["agent1"]
    assert redeem(agent1, authorize(agent1)).status_code == 200  # an earlier token
    client.force_login(cast.user)
    params = {**authorize(agent1, cast["agent2"].uri, method="GET").params, "approval_prompt": "auto"}
    client.force_login(cast.user)
    response = client.get("/o/authorize/", params)
    assert response.status_code == 200 and b'id="consent-resources"' in response.content
    without = {k: v for k, v in params.items() if k != "resource"}
    assert client.get("/o/authorize/", without).status_code == 302  # as django-oauth-toolkit does


@pytest.mark.rfc("8707-2")
def test_the_password_grant_never_reaches_another_party(cast, token_endpoint, settings):
    """No consent page: a site that keeps django-oauth-toolkit's password grant gets no token
    for another party's resource by it, whatever a rule allows."""
    from oauth2_provider.models import get_application_model

    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False}
    agent1 = cast["agent1"]
    get_application_model().objects.filter(client_id=agent1.client_id).update(
        authorization_grant_type="password"
    )
    form = {
        "grant_type": "password",
        "username": cast.data["user"]["username"],
        "password": cast.data["user"]["password"],
        "scope": "tasks.read",
        "resource": cast["agent2"].uri,
    }
    before = snapshot()
    assert_oauth_error(token_endpoint(form, agent1), 400, "invalid_target")
    assert snapshot() == before
    assert last_event().reason == "resource_not_consented"
