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


# -- revocation retried while the provider is unavailable (RFC 7009 section 2.2.1) --------


class Flaky:
    """A provider whose revocation endpoint answers 503 ``failures`` times (forever if None)."""

    def __init__(self, failures: int | None, retry_after: str | None = "1") -> None:
        self.failures = failures
        self.retry_after = retry_after
        self.revocations = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("oauth-authorization-server"):
            return httpx.Response(
                200,
                json={
                    "issuer": "https://idp.example.com",
                    "token_endpoint": "https://idp.example.com/o/token/",
                    "revocation_endpoint": "https://idp.example.com/o/revoke_token/",
                },
            )
        self.revocations += 1
        if self.failures is None or self.revocations <= self.failures:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return httpx.Response(503, json={"error": "temporarily_unavailable"}, headers=headers)
        return httpx.Response(200)


TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJhYmMxMjMifQ.c2lnbmF0dXJlLW9mLWEtcmVhbC10b2tlbg"


def sync_client(provider: Flaky, sleeps: list[float]) -> AgentClient:
    agent = AgentClient(
        "https://idp.example.com",
        "agent1",
        "s3cret",
        http=httpx.Client(transport=httpx.MockTransport(provider)),
    )
    agent.sleep = sleeps.append
    return agent


@pytest.mark.rfc("7009-2.2.1")
def test_revocation_is_retried_after_503_honouring_retry_after():
    provider, sleeps = Flaky(failures=2, retry_after="2"), []
    sync_client(provider, sleeps).revoke(TOKEN)
    assert provider.revocations == 3
    assert sleeps == [2.0, 2.0]


@pytest.mark.rfc("7009-2.2.1")
def test_retry_after_is_bounded_and_backoff_applies_without_it():
    provider, sleeps = Flaky(failures=1, retry_after="86400"), []
    agent = sync_client(provider, sleeps)
    agent.revoke(TOKEN)
    assert sleeps == [agent.REVOKE_MAX_WAIT]
    provider, sleeps = Flaky(failures=3, retry_after=None), []
    sync_client(provider, sleeps).revoke(TOKEN)
    assert len(sleeps) == 3 and sleeps == sorted(sleeps) and sleeps[0] > 0


@pytest.mark.rfc("7009-2.2.1")
def test_revocation_gives_up_with_a_typed_error_that_says_so(caplog):
    from delegation_idp.client import RevocationFailed

    provider, sleeps = Flaky(failures=None), []
    agent = sync_client(provider, sleeps)
    with pytest.raises(RevocationFailed) as failed:
        agent.revoke(TOKEN)
    assert provider.revocations == agent.REVOKE_ATTEMPTS
    assert failed.value.status == 503 and failed.value.error == "temporarily_unavailable"
    assert "not revoked" in str(failed.value)
    assert "not revoked" in caplog.text and "abc123" in caplog.text  # the jti, never the token
    assert TOKEN not in caplog.text and TOKEN not in str(failed.value)


class Unreachable(Flaky):
    """A provider whose revocation endpoint cannot be reached (connection refused) ``failures``
    times (forever if None); its metadata still answers."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("oauth-authorization-server"):
            return super().__call__(request)
        self.revocations += 1
        if self.failures is None or self.revocations <= self.failures:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)


def test_revocation_is_retried_when_the_provider_cannot_be_reached():
    provider, sleeps = Unreachable(failures=2), []
    sync_client(provider, sleeps).revoke(TOKEN)
    assert provider.revocations == 3 and len(sleeps) == 2


def test_an_unreachable_provider_ends_in_the_typed_error_that_says_the_token_is_live(caplog):
    from delegation_idp.client import RevocationFailed

    provider, sleeps = Unreachable(failures=None), []
    agent = sync_client(provider, sleeps)
    with pytest.raises(RevocationFailed) as failed:
        agent.revoke(TOKEN)
    assert provider.revocations == agent.REVOKE_ATTEMPTS
    assert failed.value.error == "temporarily_unavailable" and "not revoked" in str(failed.value)
    assert TOKEN not in caplog.text and TOKEN not in str(failed.value)


def test_revocation_is_not_retried_on_a_client_error():
    from delegation_idp.client import RevocationFailed

    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("oauth-authorization-server"):
            return Flaky(0)(request)
        refuse.calls += 1  # type: ignore[attr-defined]
        return httpx.Response(401, json={"error": "invalid_client"})

    refuse.calls = 0  # type: ignore[attr-defined]
    agent = AgentClient(
        "https://idp.example.com", "agent1", "wrong", http=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(RevocationFailed) as failed:
        agent.revoke(TOKEN)
    assert failed.value.error == "invalid_client" and failed.value.status == 401
    assert refuse.calls == 1  # type: ignore[attr-defined]


@pytest.mark.rfc("7009-2.2.1")
def test_async_revocation_retries_and_gives_up():
    from delegation_idp.client import RevocationFailed

    async def run(provider: Flaky) -> tuple[AsyncAgentClient, list[float]]:
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        http = httpx.AsyncClient(transport=httpx.MockTransport(provider))
        async with AsyncAgentClient("https://idp.example.com", "agent1", "s3cret", http=http) as agent:
            agent.sleep = sleep
            try:
                await agent.revoke(TOKEN)
            finally:
                await http.aclose()
        return agent, sleeps

    provider = Flaky(failures=2)
    _agent, sleeps = asyncio.run(run(provider))
    assert provider.revocations == 3 and sleeps == [1.0, 1.0]
    forever = Flaky(failures=None)
    with pytest.raises(RevocationFailed):
        asyncio.run(run(forever))
    assert forever.revocations == AsyncAgentClient.REVOKE_ATTEMPTS
