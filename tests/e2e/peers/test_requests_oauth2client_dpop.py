"""``requests-oauth2client``'s DPoP (RFC 9449), unmodified, against the example site served live:
its ``DPoPKey``, ``DPoPToken`` and ``dpop=True`` token requests obtain tokens bound to each
hop's own key (authorization code with PKCE and ``dpop_jkt``, token exchange along the seed's
chain, client credentials), taking up the provider's nonces (``use_dpop_nonce``) by
themselves; the last
hop's bound token is then used at a resource server of the site (Django REST framework,
``tests.resource_server.urls``), which asks for a nonce of its own, and refuses the same
token proven with another key or presented as a bearer token.

``testing=True`` is the library's one switch for plain-HTTP loopback (URL checks only).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
from requests_oauth2client import AuthorizationRequest, DPoPKey, DPoPToken, OAuth2Client

from example_project.demo_services.launch import HeadlessUser
from tests.helpers import decode, with_idp

pytestmark = [pytest.mark.integration, pytest.mark.urls("tests.resource_server.urls")]

AGENT2 = "https://agent2.example.com"
MCP = "https://mcp-server1.example.com"
RS = "https://resource-server.example.com"


SESSIONS: list[requests.Session] = []


@pytest.fixture(autouse=True)
def closed_sessions() -> Any:
    """Every client's keep-alive connection closed before the live server stops (a server
    thread still holding one would close the test's shared database connection)."""
    yield
    while SESSIONS:
        SESSIONS.pop().close()


def discovered(cast: dict[str, Any], client_id: str, client_secret: str, **extra: Any) -> OAuth2Client:
    issuer = cast["issuer"]
    session = requests.Session()
    SESSIONS.append(session)
    return OAuth2Client.from_discovery_endpoint(
        f"{issuer}/.well-known/oauth-authorization-server",
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        session=session,
        testing=True,  # plain-HTTP loopback
        **extra,
    )


def agent(cast: dict[str, Any], name: str) -> OAuth2Client:
    entry = cast["agents"][name]
    return discovered(cast, entry["client_id"], entry["client_secret"], redirect_uri=entry["redirect_uri"])


def jkt_of(token: Any) -> str:
    return str(decode(str(token.access_token))[1]["cnf"]["jkt"])


@pytest.fixture
def nonces(live_cast: dict[str, Any]) -> Any:
    """Nonces required at the token endpoint and at the site's resource server, and the
    resource server's own options (RFC 9449 sections 8 and 9)."""
    with with_idp(
        DPOP_NONCE_LIFETIME=300,
        RESOURCE_DPOP_NONCE_LIFETIME=300,
        RESOURCE_SERVER_URI=RS,
        RESOURCE_SCOPES_SUPPORTED=["tasks.read", "tasks.write"],
    ):
        yield


@pytest.mark.rfc("9449-5")
@pytest.mark.rfc("9449-7.1")
@pytest.mark.rfc("9449-8")
@pytest.mark.rfc("9449-9")
def test_requests_oauth2client_obtains_bound_tokens_along_the_chain_and_uses_one(live_cast, nonces):
    user = live_cast["user"]
    agent1, agent2, mcp = (
        agent(live_cast, "agent1"),
        agent(live_cast, "agent2"),
        agent(live_cast, "mcp-server1"),
    )
    key1, key2, key3 = (
        DPoPKey.generate(alg="ES256"),
        DPoPKey.generate(alg="ES256"),
        DPoPKey.generate(alg="EdDSA"),
    )

    # agent1: the user's token. Its authorization request names agent1's key (dpop_jkt, RFC
    # 9449 section 10), and the library redeems the code with a proof of that key.
    key1 = DPoPKey.generate(alg="ES256")
    request = AuthorizationRequest(
        agent1.authorization_endpoint,
        client_id=agent1.client_id,
        redirect_uri=agent1.redirect_uri,
        scope=live_cast["scope"],
        issuer=agent1.issuer,
        authorization_response_iss_parameter_supported=True,
        dpop_key=key1,
    )
    assert request.dpop_jkt == key1.dpop_jkt
    callback = asyncio.run(HeadlessUser(user["username"], user["password"]).authorize(str(request.uri)))
    user_token = agent1.authorization_code(request.validate_callback(callback))
    assert isinstance(user_token, DPoPToken) and user_token.token_type == "DPoP"
    assert jkt_of(user_token) == key1.dpop_jkt
    assert key1.as_nonce  # the provider asked for a nonce, and the library took it up

    # Each hop exchanges with its own key: the new token is bound to the requester's key.
    to_agent2 = agent1.token_exchange(subject_token=user_token, audience=AGENT2, dpop=True, dpop_key=key1)
    to_mcp = agent2.token_exchange(subject_token=to_agent2, audience=MCP, dpop=True, dpop_key=key2)
    to_rs = mcp.token_exchange(subject_token=to_mcp, audience=RS, dpop=True, dpop_key=key3)
    assert [jkt_of(t) for t in (to_agent2, to_mcp, to_rs)] == [key1.dpop_jkt, key2.dpop_jkt, key3.dpop_jkt]
    assert decode(str(to_rs.access_token))[1]["act"] == {
        "sub": MCP,
        "act": {"sub": AGENT2, "act": {"sub": "https://agent1.example.com"}},
    }
    # Introspection (RFC 9449 section 6.2) names the key.
    assert mcp.introspect_token(to_rs)["cnf"] == {"jkt": key3.dpop_jkt}

    # The resource server: Authorization: DPoP and a proof with ath; its nonce taken up by the library.
    api = f"{live_cast['issuer']}/api/whoami/"
    answer = requests.get(api, auth=to_rs, timeout=30)
    assert answer.status_code == 200, (answer.status_code, answer.headers.get("WWW-Authenticate"))
    seen = answer.json()
    assert seen["jkt"] == key3.dpop_jkt and seen["sub"] == "user@example.com"
    assert seen["actors"] == [MCP, AGENT2, "https://agent1.example.com"]
    assert key3.rs_nonce  # the resource server's nonce, kept for the next request
    assert requests.get(api, auth=to_rs, timeout=30).json()["jti"] == seen["jti"]

    # The same token proven with another key, or sent as a bearer token, is refused.
    stolen = DPoPToken(str(to_rs.access_token), _dpop_key=DPoPKey.generate(alg="ES256"), expires_in=300)
    refused = requests.get(api, auth=stolen, timeout=30)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("DPoP")
    as_bearer = requests.get(api, headers={"Authorization": f"Bearer {to_rs.access_token}"}, timeout=30)
    assert as_bearer.status_code == 401


@pytest.mark.rfc("9449-5")
def test_requests_oauth2client_client_credentials_with_dpop_true(live_cast, nonces):
    """A client-credentials agent whose library generates the key itself (``dpop=True``)."""
    from oauth2_provider.models import get_application_model

    from delegation_idp.models import Party

    app = get_application_model().objects.create(
        name="worker",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret="worker-secret-for-the-peer-test",
        hash_client_secret=True,
    )
    Party.objects.create(uri="https://worker.example.com", name="Worker", kind=Party.AGENT, application=app)
    worker = discovered(
        live_cast, app.client_id, "worker-secret-for-the-peer-test", dpop_bound_access_tokens=True
    )
    first = worker.client_credentials()
    assert isinstance(first, DPoPToken) and jkt_of(first) == first.dpop_key.dpop_jkt
    second = worker.client_credentials(dpop_key=first.dpop_key)
    assert jkt_of(second) == first.dpop_key.dpop_jkt
