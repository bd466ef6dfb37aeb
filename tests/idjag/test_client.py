"""The agent client asks for ID-JAGs (leg 1), synchronously and asynchronously."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

import httpx
import pytest

from delegation_idp.client import AgentClient, AsyncAgentClient, InvalidTarget
from delegation_idp.idjag import TOKEN_TYPE
from tests.helpers import decode
from tests.idjag.conftest import AS_ISSUER, MCP_RESOURCE

pytestmark = pytest.mark.usefixtures("id_jag_rule")


@pytest.fixture
def agent1(cast, provider) -> AgentClient:
    agent = cast["agent1"]
    return AgentClient(
        "http://testserver", agent.client_id, agent.client_secret, http=httpx.Client(transport=provider)
    )


def test_the_client_obtains_an_id_jag_and_never_caches_it(agent1, user_token):
    first = agent1.id_jag(user_token, audience=AS_ISSUER, resource=MCP_RESOURCE, scope="tasks.read")
    assert (first.issued_token_type, first.token_type) == (TOKEN_TYPE, "N_A")
    claims = decode(first.access_token)[1]
    assert (claims["aud"], claims["resource"], claims["scope"]) == (AS_ISSUER, MCP_RESOURCE, "tasks.read")
    second = agent1.id_jag(user_token, audience=AS_ISSUER, resource=MCP_RESOURCE, scope="tasks.read")
    assert decode(second.access_token)[1]["jti"] != claims["jti"]


def test_a_refusal_is_a_typed_error(agent1, user_token):
    with pytest.raises(InvalidTarget):
        agent1.id_jag(user_token, audience="https://as.elsewhere.example.org")


def test_the_async_client_sends_the_id_jag_request():
    sent: list[list[tuple[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(
                200,
                json={"issuer": "https://idp.example.com", "token_endpoint": "https://idp.example.com/token"},
            )
        sent.append(parse_qsl(request.content.decode()))
        return httpx.Response(
            200,
            json={
                "access_token": "jag",
                "issued_token_type": TOKEN_TYPE,
                "token_type": "N_A",
                "expires_in": 300,
            },
        )

    async def run():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncAgentClient("https://idp.example.com", "c", "s", http=http) as agent:
            first = await agent.id_jag("a.b.c", audience=AS_ISSUER, resource=MCP_RESOURCE)
            await agent.id_jag("a.b.c", audience=AS_ISSUER, resource=MCP_RESOURCE)
        await http.aclose()
        return first

    result = asyncio.run(run())
    assert (result.access_token, result.token_type, result.issued_token_type) == ("jag", "N_A", TOKEN_TYPE)
    assert len(sent) == 2  # never cached
    assert ("requested_token_type", TOKEN_TYPE) in sent[0]
    assert [v for k, v in sent[0] if k == "audience"] == [AS_ISSUER]
    assert ("resource", MCP_RESOURCE) in sent[0]
