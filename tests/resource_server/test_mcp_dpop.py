"""DPoP-bound tokens at an MCP server on the official SDK (RFC 9449 sections 7 and 9): the
demo's server, whose SDK app has :class:`DpopAuthMiddleware` added, driven over its
streamable-HTTP endpoint in process."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from delegation_idp.resource_server.mcp import (
    DelegatedAccessToken,
    DelegationTokenVerifier,
    DpopAuthMiddleware,
)
from delegation_idp.resource_server.validation import (
    ProofRequest,
    ResourceServerConfig,
    TokenError,
    TokenValidator,
)
from tests.resource_server.mcp_sdk import initialize_request
from tests.resource_server.test_mcp import IDENTITY, URL
from tests.resource_server.test_validation import ISSUER, FakeProvider
from tests.support.dpop import Prover

pytestmark = pytest.mark.rfc("9449-7.1")

METADATA_URL = "http://127.0.0.1:8003/.well-known/oauth-protected-resource/mcp"


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def http(provider: FakeProvider) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(provider.handler))


@pytest.fixture
def prover() -> Prover:
    return Prover()


@pytest.fixture
def bound(provider: FakeProvider, prover: Prover) -> str:
    return provider.token(aud=URL, cnf={"jkt": prover.jkt})


def serve(http: httpx.Client, base_url: str = "http://127.0.0.1:8003", **dpop: Any) -> TestClient:
    """The demo's MCP server (official SDK) with its validator's DPoP options set to ``dpop``."""
    from example_project.demo_services import mcp_server

    config = mcp_server.McpConfig(
        issuer=ISSUER,
        uri=IDENTITY,
        public_url=URL,
        client_id="mcp-client",
        client_secret="not-used-here",
        resource_url="http://127.0.0.1:8004/api/tasks/",
    )
    validator = TokenValidator(
        ResourceServerConfig(issuer=ISSUER, resource=IDENTITY, resource_urls=(URL,), **dpop), http=http
    )
    verifier = DelegationTokenVerifier(validator, resource_server_url=URL)
    app = mcp_server.build_server(config, verifier=verifier).streamable_http_app(host="127.0.0.1")
    app.add_middleware(DpopAuthMiddleware, verifier=verifier)  # as mcp_server.mcp_app does
    return TestClient(app, base_url=base_url)


@pytest.fixture
def mcp(http: httpx.Client):
    with serve(http) as client:
        yield client


def initialize(client: TestClient, token: str, proof: str | None, scheme: str = "DPoP") -> httpx.Response:
    request = initialize_request(token)
    request["headers"]["Authorization"] = f"{scheme} {token}"
    if proof is not None:
        request["headers"]["DPoP"] = proof
    return client.post("/mcp", **request)


def challenges(response: httpx.Response) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for value in response.headers.get_list("www-authenticate"):
        scheme, _, params = value.partition(" ")
        found[scheme] = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', params))
    return found


def assert_dpop_refusal(response: httpx.Response, error: str) -> dict[str, str]:
    assert response.status_code == 401, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error
    params = challenges(response)["DPoP"]
    assert params["error"] == error and params["algs"] == "ES256 ES384 EdDSA PS256 RS256"
    assert params["resource_metadata"] == METADATA_URL
    return params


def test_a_bound_token_with_its_proof_gets_in(mcp, bound, prover):
    response = initialize(mcp, bound, prover.proof("POST", URL, token=bound))
    assert response.status_code == 200, response.text
    assert "dpop-nonce" not in response.headers


def test_the_verifier_returns_the_thumbprint(http, bound, prover):
    config = ResourceServerConfig(issuer=ISSUER, resource=IDENTITY, resource_urls=(URL,))
    verifier = DelegationTokenVerifier(TokenValidator(config, http=http), resource_server_url=URL)
    request = ProofRequest((prover.proof("POST", URL, token=bound),), "POST", URL)
    access = asyncio.run(verifier.verify_dpop(bound, request))
    assert isinstance(access, DelegatedAccessToken) and access.delegated.jkt == prover.jkt
    # Presented as a bearer token through the SDK's hook, the same token is refused.
    assert asyncio.run(verifier.verify_token(bound)) is None


def test_a_bearer_token_still_gets_in_and_a_401_offers_both_schemes(mcp, provider):
    assert initialize(mcp, provider.token(aud=URL), None, scheme="Bearer").status_code == 200
    refused = mcp.post("/mcp", json={})
    assert refused.status_code == 401
    found = challenges(refused)
    assert set(found) == {"Bearer", "DPoP"}
    assert found["DPoP"] == {"algs": "ES256 ES384 EdDSA PS256 RS256"}


@pytest.mark.rfc("9449-7.2")
def test_a_bound_token_presented_as_a_bearer_token_is_refused(mcp, bound):
    response = initialize(mcp, bound, None, scheme="Bearer")
    assert response.status_code == 401
    found = challenges(response)
    assert found["Bearer"]["error"] == "invalid_token"
    assert "error" not in found["DPoP"]


def test_a_dpop_token_without_a_proof_is_refused(mcp, bound):
    assert_dpop_refusal(initialize(mcp, bound, None), "invalid_dpop_proof")


@pytest.mark.rfc("9449-11.1")
def test_a_replayed_proof_is_refused(mcp, bound, prover):
    proof = prover.proof("POST", URL, token=bound)
    assert initialize(mcp, bound, proof).status_code == 200
    params = assert_dpop_refusal(initialize(mcp, bound, proof), "invalid_dpop_proof")
    assert "already used" in params["error_description"]


@pytest.mark.parametrize(
    ("htm", "htu"),
    [
        ("GET", URL),
        ("POST", "http://127.0.0.1:8003/other"),
        ("POST", "http://127.0.0.1:8004/mcp"),
        ("POST", "https://127.0.0.1:8003/mcp"),
    ],
)
def test_a_proof_for_another_method_or_url_is_refused(mcp, bound, prover, htm, htu):
    assert_dpop_refusal(initialize(mcp, bound, prover.proof(htm, htu, token=bound)), "invalid_dpop_proof")


def test_an_expired_proof_is_refused(mcp, bound, prover):
    old = prover.proof("POST", URL, token=bound, iat=time.time() - 120)
    assert_dpop_refusal(initialize(mcp, bound, old), "invalid_dpop_proof")


def test_a_proof_with_a_wrong_ath_is_refused(mcp, bound, prover, provider):
    other = provider.token(aud=URL, jti="j2")
    assert_dpop_refusal(initialize(mcp, bound, prover.proof("POST", URL, token=other)), "invalid_dpop_proof")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_a_symmetric_or_none_proof_is_refused(mcp, bound, prover, alg):
    proof = prover.forged(prover.claims("POST", URL, token=bound), alg=alg)
    assert_dpop_refusal(initialize(mcp, bound, proof), "invalid_dpop_proof")


def test_a_stolen_token_is_useless_with_another_key(mcp, bound):
    thief = Prover()
    params = assert_dpop_refusal(
        initialize(mcp, bound, thief.proof("POST", URL, token=bound)), "invalid_token"
    )
    assert "key binding" in params["error_description"]


def test_htu_is_the_url_clients_connect_to_not_the_host_the_request_names(http, bound, prover):
    """Reached as ``localhost`` (a proxy, another name): the proof names the public URL."""
    with serve(http, base_url="http://localhost:8003") as client:
        assert initialize(client, bound, prover.proof("POST", URL, token=bound)).status_code == 200
        local = prover.proof("POST", "http://localhost:8003/mcp", token=bound)
        assert_dpop_refusal(initialize(client, bound, local), "invalid_dpop_proof")


def test_insufficient_scope_of_a_bound_token_is_challenged_in_the_dpop_scheme(mcp, provider, prover):
    token = provider.token(aud=URL, scope="other", cnf={"jkt": prover.jkt})
    response = initialize(mcp, token, prover.proof("POST", URL, token=token))
    assert response.status_code == 403
    found = challenges(response)
    assert set(found) == {"DPoP"}
    assert found["DPoP"]["error"] == "insufficient_scope" and found["DPoP"]["algs"]


@pytest.mark.rfc("9449-9")
def test_the_nonce_flow(http, bound, prover):
    with serve(http, dpop_nonce_lifetime=300, dpop_nonce_secret="mcp-secret") as client:
        first = initialize(client, bound, prover.proof("POST", URL, token=bound))
        assert_dpop_refusal(first, "use_dpop_nonce")
        nonce = first.headers["dpop-nonce"]
        retry = initialize(client, bound, prover.proof("POST", URL, token=bound, nonce=nonce))
        assert retry.status_code == 200, retry.text
        assert retry.headers["dpop-nonce"] == nonce
    # Another process with the same secret accepts that nonce: nothing is stored.
    with serve(http, dpop_nonce_lifetime=300, dpop_nonce_secret="mcp-secret") as other:
        again = initialize(other, bound, prover.proof("POST", URL, token=bound, nonce=nonce))
        assert again.status_code == 200, again.text


def test_nonces_need_a_secret():
    with pytest.raises(ValueError, match="dpop_nonce_secret"):
        ResourceServerConfig(issuer=ISSUER, resource=IDENTITY, dpop_nonce_lifetime=60)


def test_the_middleware_needs_the_url_clients_connect_to(http):
    config = ResourceServerConfig(issuer=ISSUER, resource=IDENTITY)
    with pytest.raises(ValueError, match="resource_server_url"):
        DpopAuthMiddleware(object(), DelegationTokenVerifier(TokenValidator(config, http=http)))


@pytest.mark.integration
@pytest.mark.rfc("9449-11.1")
def test_two_processes_sharing_the_revocation_redis_refuse_each_others_replays(
    http, bound, prover, redis_url
):
    """An MCP validator with a revocation Redis remembers proofs there: a proof one process
    accepted is a replay at another."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()

    def verifier() -> DelegationTokenVerifier:
        config = ResourceServerConfig(
            issuer=ISSUER, resource=IDENTITY, resource_urls=(URL,), revocation_redis_url=redis_url
        )
        return DelegationTokenVerifier(TokenValidator(config, http=http), resource_server_url=URL)

    first, second = verifier(), verifier()
    request = ProofRequest((prover.proof("POST", URL, token=bound),), "POST", URL)
    assert asyncio.run(first.verify_dpop(bound, request)).delegated.jkt == prover.jkt
    with pytest.raises(TokenError) as refused:
        asyncio.run(second.verify_dpop(bound, request))
    assert refused.value.reason == "dpop_replayed"
    redis.Redis.from_url(redis_url).flushdb()
