"""The MCP side: the SDK token verifier and the demo's MCP server, in process.

The official ``mcp`` SDK serves the RFC 9728 document for ``AuthSettings.resource_server_url``
(the URL clients connect to); the verifier must accept a token addressed to that URL (the
RFC 8707 ``resource`` a stock MCP client asks for) as well as one addressed to the server's
identity URI, and nothing else.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from starlette.testclient import TestClient

from delegation_idp.resource_server.mcp import DelegatedAccessToken, DelegationTokenVerifier
from delegation_idp.resource_server.validation import ResourceServerConfig, TokenValidator
from tests.resource_server.mcp_sdk import initialize_request
from tests.resource_server.test_validation import ISSUER, FakeProvider

IDENTITY = "https://mcp-server1.example.com"
URL = "http://127.0.0.1:8003/mcp"


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def http(provider: FakeProvider) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(provider.handler))


@pytest.fixture
def verifier(http: httpx.Client) -> DelegationTokenVerifier:
    config = ResourceServerConfig(issuer=ISSUER, resource=IDENTITY, resource_urls=(URL,))
    return DelegationTokenVerifier(TokenValidator(config, http=http), resource_server_url=URL)


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize("aud", [URL, URL + "/", IDENTITY, [IDENTITY, URL]])
def test_the_verifier_accepts_the_identity_uri_and_the_url_clients_connect_to(provider, verifier, aud):
    access = asyncio.run(verifier.verify_token(provider.token(aud=aud)))
    assert isinstance(access, DelegatedAccessToken)
    assert access.subject == "user@example.com" and access.scopes == ["tasks.read"]
    # AccessToken.resource: the aud entry the token was accepted under (the SDK's contract).
    assert access.resource == (aud if isinstance(aud, str) else IDENTITY)


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize(
    "aud", ["http://127.0.0.1:8003/other", "http://127.0.0.1:8004/mcp", "https://resource-server.example.com"]
)
def test_the_verifier_refuses_a_token_for_another_url(provider, verifier, aud):
    assert asyncio.run(verifier.verify_token(provider.token(aud=aud))) is None


def test_the_verifier_wants_the_sdks_resource_url_among_its_own(http):
    config = ResourceServerConfig(issuer=ISSUER, resource=IDENTITY, resource_urls=(URL,))
    DelegationTokenVerifier(TokenValidator(config, http=http), resource_server_url=URL + "/")
    with pytest.raises(ValueError, match="resource_urls"):
        DelegationTokenVerifier(
            TokenValidator(config, http=http), resource_server_url="http://127.0.0.1:9/mcp"
        )
    bare = ResourceServerConfig(issuer=ISSUER, resource=IDENTITY)
    with pytest.raises(ValueError, match="resource_urls"):
        DelegationTokenVerifier(TokenValidator(bare, http=http), resource_server_url=URL)


# -- the demo's MCP server -------------------------------------------------------------------


@pytest.fixture
def mcp_client(http: httpx.Client):
    from example_project.demo_services.mcp_server import McpConfig, mcp_app

    config = McpConfig(
        issuer=ISSUER,
        uri=IDENTITY,
        public_url=URL,
        client_id="mcp-client",
        client_secret="not-used-here",
        resource_url="http://127.0.0.1:8004/api/tasks/",
    )
    with TestClient(mcp_app(config, http=http), base_url="http://127.0.0.1:8003") as client:
        yield client


def initialize(client: TestClient, token: str) -> httpx.Response:
    return client.post("/mcp", **initialize_request(token))


@pytest.mark.rfc("9728-3.3")
def test_the_demo_mcp_servers_metadata_names_the_url_clients_connect_to(mcp_client):
    document = mcp_client.get("/.well-known/oauth-protected-resource/mcp").json()
    assert document["resource"] == URL
    assert document["authorization_servers"] == [ISSUER]
    # The SDK client's own check, as it runs it after discovery (RFC 9728 section 3.3).
    assert check_resource_allowed(
        requested_resource=resource_url_from_server_url(URL), configured_resource=document["resource"]
    )


@pytest.mark.rfc("9728-5.1")
def test_the_demo_mcp_server_takes_a_token_addressed_to_its_url(provider, mcp_client):
    assert initialize(mcp_client, provider.token(aud=URL)).status_code == 200
    assert initialize(mcp_client, provider.token(aud=IDENTITY)).status_code == 200
    refused = initialize(mcp_client, provider.token(aud="http://127.0.0.1:8004/api/tasks/"))
    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge
    metadata_url = re.search(r'resource_metadata="([^"]+)"', challenge).group(1)
    assert metadata_url == "http://127.0.0.1:8003/.well-known/oauth-protected-resource/mcp"
    assert mcp_client.get(metadata_url).json()["resource"] == URL
