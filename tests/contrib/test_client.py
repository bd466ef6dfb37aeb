"""The agent client: discovery, exchange with a typed result, cache, typed errors; sync and async."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from delegation_idp.client import (
    AgentClient,
    AsyncAgentClient,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
)
from tests.helpers import decode


@pytest.fixture
def agent1(cast, provider) -> AgentClient:
    agent = cast["agent1"]
    return AgentClient(
        "http://testserver", agent.client_id, agent.client_secret, http=httpx.Client(transport=provider)
    )


@pytest.mark.rfc("8693-2.2.1")
def test_exchange_returns_a_typed_result_and_caches_it(agent1, user_token, cast, provider):
    result = agent1.exchange(user_token, audience=cast["agent2"].uri)
    assert result.issued_token_type == "urn:ietf:params:oauth:token-type:access_token"
    assert result.token_type == "Bearer" and result.expires_in > 0
    assert decode(result.access_token)[1]["act"] == {"sub": cast["agent1"].uri}
    assert result.access_token not in repr(result)
    again = agent1.exchange(user_token, audience=cast["agent2"].uri)
    assert again is result
    assert provider.count("/o/token/") == 1
    narrowed = agent1.exchange(user_token, audience=cast["agent2"].uri, scope="tasks.read")
    assert narrowed.access_token != result.access_token  # another (target, scope): another token
    assert provider.count("/o/token/") == 2


@pytest.mark.rfc("8693-2.2.2")
def test_typed_errors_carry_the_oauth_error_code(agent1, user_token, cast, provider):
    with pytest.raises(InvalidTarget) as target:
        agent1.exchange(user_token, audience="https://unknown.example.com")
    assert target.value.error == "invalid_target" and target.value.status == 400
    with pytest.raises(InvalidScope):
        agent1.exchange(user_token, audience=cast["agent2"].uri, scope="profile")
    with pytest.raises(InvalidRequest):
        agent1.exchange("not-a-token", audience=cast["agent2"].uri)
    wrong = AgentClient(
        "http://testserver", cast["agent1"].client_id, "wrong", http=httpx.Client(transport=provider)
    )
    with pytest.raises(InvalidClient) as client_error:
        wrong.exchange(user_token, audience=cast["agent2"].uri)
    assert client_error.value.status == 401
    assert isinstance(client_error.value, OAuthError)


def _token_with_jti(jti: str) -> str:
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"jti": jti}).encode()).rstrip(b"=").decode()
    return f"e30.{payload}.sig"


def test_async_client_exchanges_caches_and_raises_typed_errors():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(
                200,
                json={"issuer": "https://idp.example.com", "token_endpoint": "https://idp.example.com/token"},
            )
        form = dict(pair.split("=", 1) for pair in request.content.decode().split("&"))
        if "unknown" in form.get("audience", ""):
            return httpx.Response(400, json={"error": "invalid_target", "error_description": "no"})
        return httpx.Response(
            200, json={"access_token": "new", "token_type": "Bearer", "expires_in": 600, "scope": "s"}
        )

    async def run():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncAgentClient("https://idp.example.com", "c", "s", http=http) as agent:
            first = await agent.exchange(_token_with_jti("j1"), audience="https://a2.example.com")
            second = await agent.exchange(_token_with_jti("j1"), audience="https://a2.example.com")
            other = await agent.exchange(_token_with_jti("j2"), audience="https://a2.example.com")
            with pytest.raises(InvalidTarget):
                await agent.exchange(_token_with_jti("j1"), audience="https://unknown.example.com")
        await http.aclose()
        return first, second, other

    first, second, other = asyncio.run(run())
    assert first is second and other is not first
    assert first.expires_in == 600 and first.access_token == "new"
    assert calls.count("/token") == 3  # j1 once (cached), j2 once, the refused one
