"""Enterprise-managed authorization across two trust domains, for real
(draft-ietf-oauth-identity-assertion-authz-grant; the MCP Enterprise-Managed Authorization
extension): two instances of the example site, each with its own database and keys.

The user signs in at the enterprise IdP (A) and authorizes agent1. agent1 asks A for an
ID-JAG addressed to the tools domain's authorization server (B) with this package's agent
client (leg 1); the official MCP SDK's ``IdentityAssertionOAuthProvider``, unmodified,
redeems it at B with the ``jwt-bearer`` grant (leg 2) and calls a tool on mcp-server1, which
trusts only B. The tool exchanges its token at B for the resource server, which sees the
whole chain: mcp-server1 <- agent1, agent1 being the actor A recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from delegation_idp.client import AgentClient, OAuthError
from delegation_idp.conf import idp_settings
from delegation_idp.idjag import TOKEN_TYPE, TYP
from delegation_idp.models import ExternalIdentity, TokenLineage, TrustedIssuer
from example_project.demo_services.enterprise import TOOLS_SCOPE, enterprise_login, user_token

pytestmark = pytest.mark.integration

AGENT1 = "https://agent1.example.com"
MCP = "https://mcp-server1.example.com"


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-5.1")
@pytest.mark.rfc("7523-3")
@pytest.mark.rfc("8693-4.1")
def test_an_agent_reaches_an_mcp_server_of_another_domain_with_an_id_jag(two_domains):
    domains = two_domains
    login = asyncio.run(
        enterprise_login(domains.idp, domains.tools, domains.mcp_url, domains.idp_cast, domains.tools_client)
    )
    assert "list_tasks" in login.tools

    # Leg 1 at A: an ID-JAG for B, for the MCP server's resource, naming agent1 as the actor.
    jag = login.id_jag
    assert jag["typ"] == TYP
    assert jag["iss"] == domains.idp and jag["aud"] == domains.tools
    assert jag["client_id"] == domains.tools_client["client_id"]  # agent1's client id at B
    assert jag["resource"] == domains.mcp_url and jag["scope"] == TOOLS_SCOPE
    assert jag["sub"] == login.user_token["sub"]
    assert jag["act"] == {"sub": AGENT1}
    assert login.user_token["iss"] == domains.idp and "act" not in login.user_token
    assert jag["exp"] - jag["iat"] <= 300

    # Leg 2 at B: a token of B's for a user B created just in time for (A, sub), to the MCP server.
    link = ExternalIdentity.objects.select_related("user").get(
        issuer=TrustedIssuer.objects.get(issuer=domains.idp), subject=jag["sub"]
    )
    local_sub = str(idp_settings.SUBJECT_RESOLVER(link.user))
    token = login.access_token
    assert token["iss"] == domains.tools and token["sub"] == local_sub
    assert token["aud"] in (domains.mcp_url, [domains.mcp_url])
    assert token["client_id"] == domains.tools_client["client_id"]
    assert token["act"] == {"sub": AGENT1} and token["scope"] == TOOLS_SCOPE
    redeemed = TokenLineage.objects.get(jti=token["jti"])
    assert redeemed.grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"

    # mcp-server1 took it, exchanged it at B, and the resource server saw the whole chain.
    received = login.result["received"]
    assert received["sub"] == local_sub and received["actors"] == [AGENT1]
    saw = login.resource_server_saw
    assert saw["sub"] == local_sub
    assert saw["actors"] == [MCP, AGENT1]
    onward = TokenLineage.objects.get(jti=login.result["sent"]["jti"])
    assert onward.parent_jti == redeemed.jti


@contextmanager
def _agent1(domains: Any) -> Iterator[AgentClient]:
    """agent1 at the enterprise IdP (this package's agent client)."""
    agent = domains.idp_cast["agents"]["agent1"]
    with httpx.Client(timeout=30) as http:
        yield AgentClient(domains.idp, agent["client_id"], agent["client_secret"], http=http)


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
@pytest.mark.rfc("7009-2.1")
def test_revoking_the_users_token_at_the_idp_stops_new_id_jags(two_domains):
    domains = two_domains
    agent = domains.idp_cast["agents"]["agent1"]
    with _agent1(domains) as idp:
        token = asyncio.run(_user_token(domains))
        first = idp.id_jag(token, audience=domains.tools, resource=domains.mcp_url, scope=TOOLS_SCOPE)
        assert first.issued_token_type == TOKEN_TYPE and first.token_type == "N_A"
        idp.revoke(token)
        with pytest.raises(OAuthError) as refused:
            idp.id_jag(token, audience=domains.tools, resource=domains.mcp_url, scope=TOOLS_SCOPE)
    assert refused.value.error == "invalid_request"
    assert agent["client_id"] not in str(refused.value)  # nothing echoed but the reason


async def _user_token(domains: Any) -> str:
    from delegation_idp.client import AsyncAgentClient

    agent = domains.idp_cast["agents"]["agent1"]
    async with AsyncAgentClient(domains.idp, agent["client_id"], agent["client_secret"]) as idp:
        return await user_token(idp, domains.idp, agent, domains.idp_cast["user"])


@pytest.mark.rfc("9068-4")
def test_the_mcp_server_trusts_only_its_own_authorization_server(two_domains):
    """Neither A's token for agent1 nor an ID-JAG gets into mcp-server1: it trusts B alone."""
    domains = two_domains
    token = asyncio.run(_user_token(domains))
    with _agent1(domains) as idp:
        jag = idp.id_jag(token, audience=domains.tools, resource=domains.mcp_url, scope=TOOLS_SCOPE)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    for presented in (token, jag.access_token):
        auth = {"Authorization": f"Bearer {presented}"}
        response = httpx.post(domains.mcp_url, json=call, headers={**headers, **auth}, timeout=30)
        assert response.status_code == 401, response.text
        assert "invalid_token" in response.headers.get("www-authenticate", "")
