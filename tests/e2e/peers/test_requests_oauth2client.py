"""``requests-oauth2client``, unmodified, as an agent written by someone else would use it.

Configured from the provider's RFC 8414 metadata alone; the authorization code flow with
S256 PKCE (RFC 7636) and the RFC 9207 ``iss`` check of its ``AuthorizationRequest``; the
user signs in and consents at the site's own pages (a headless browser); then RFC 8693 token
exchange, RFC 7662 introspection and RFC 7009 revocation through the library's own calls.

The library refuses endpoints that are not https unless ``testing=True``: its one switch
for a test server on plain-HTTP loopback. It turns off URL checks only; the ``iss``, state
and PKCE handling stay as in production.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from requests_oauth2client import AuthorizationRequest, OAuth2Client
from requests_oauth2client.exceptions import MismatchingIssuer

from example_project.demo_services.launch import HeadlessUser
from tests.helpers import decode

pytestmark = pytest.mark.integration

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AGENT1 = "https://agent1.example.com"
AGENT2 = "https://agent2.example.com"
MCP = "https://mcp-server1.example.com"
USER = "user@example.com"


def discovered(cast: dict[str, Any], name: str) -> OAuth2Client:
    """The agent ``name`` as a requests-oauth2client ``OAuth2Client`` built from discovery."""
    issuer, agent = cast["issuer"], cast["agents"][name]
    return OAuth2Client.from_discovery_endpoint(
        f"{issuer}/.well-known/oauth-authorization-server",
        issuer=issuer,
        client_id=agent["client_id"],
        client_secret=agent["client_secret"],
        redirect_uri=agent["redirect_uri"],
        testing=True,  # plain-HTTP loopback
    )


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    return parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), **params})).geturl()


@pytest.mark.rfc("9207-2.4")
@pytest.mark.rfc("8693-2.1")
@pytest.mark.rfc("7662-2.2")
@pytest.mark.rfc("7009-2.1")
def test_requests_oauth2client_signs_in_exchanges_introspects_and_revokes(live_cast):
    issuer, user = live_cast["issuer"], live_cast["user"]
    agent1 = discovered(live_cast, "agent1")
    assert agent1.issuer == issuer
    assert agent1.authorization_response_iss_parameter_supported is True

    # Authorization code with PKCE; the library checks iss against the issuer (RFC 9207).
    request = AuthorizationRequest(
        agent1.authorization_endpoint,
        client_id=agent1.client_id,
        redirect_uri=agent1.redirect_uri,
        scope=live_cast["scope"],
        issuer=agent1.issuer,
        authorization_response_iss_parameter_supported=agent1.authorization_response_iss_parameter_supported,
    )
    assert request.code_challenge_method == "S256"
    callback = asyncio.run(HeadlessUser(user["username"], user["password"]).authorize(str(request.uri)))
    assert callback.startswith(agent1.redirect_uri)
    with pytest.raises(MismatchingIssuer):  # the check is real: another issuer is refused
        request.validate_callback(with_query(callback, iss="https://attacker.example.com"))
    response = request.validate_callback(callback)
    user_token = agent1.authorization_code(response)
    claims = decode(str(user_token.access_token))[1]
    assert (claims["sub"], claims["aud"], claims["client_id"]) == (USER, AGENT1, agent1.client_id)
    assert "act" not in claims

    # agent1 exchanges the user's token for one addressed to agent2; agent2 continues.
    to_agent2 = agent1.token_exchange(subject_token=user_token, audience=AGENT2)
    assert to_agent2.kwargs["issued_token_type"] == ACCESS_TOKEN_TYPE
    claims = decode(str(to_agent2.access_token))[1]
    assert (claims["sub"], claims["aud"]) == (USER, AGENT2)
    assert claims["act"] == {"sub": AGENT1}
    agent2 = discovered(live_cast, "agent2")
    to_mcp = agent2.token_exchange(
        subject_token=to_agent2, subject_token_type=ACCESS_TOKEN_TYPE, audience=MCP
    )
    assert decode(str(to_mcp.access_token))[1]["act"] == {"sub": AGENT2, "act": {"sub": AGENT1}}

    # Introspection (RFC 7662) by each token's own client shows the nested act chain.
    answer = agent1.introspect_token(to_agent2)
    assert answer["active"] is True
    assert (answer["sub"], answer["aud"], answer["act"]) == (USER, AGENT2, {"sub": AGENT1})
    answer = agent2.introspect_token(to_mcp)
    assert answer["active"] is True
    assert answer["act"] == {"sub": AGENT2, "act": {"sub": AGENT1}}
    assert agent1.introspect_token(user_token)["active"] is True

    # Revocation (RFC 7009): agent1 revokes its exchanged token; it and the token exchanged
    # from it are inactive, the user's token it came from is not.
    assert agent1.revoke_access_token(to_agent2) is True
    assert agent1.introspect_token(to_agent2) == {"active": False}
    assert agent2.introspect_token(to_mcp) == {"active": False}
    assert agent1.introspect_token(user_token)["active"] is True
    assert agent1.revoke_access_token(user_token) is True
    assert agent1.introspect_token(user_token) == {"active": False}
