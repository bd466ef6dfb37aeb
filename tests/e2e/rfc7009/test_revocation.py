"""RFC 7009 token revocation of the tokens the provider issues, black-box over HTTP.

Only the three endpoints speak here: revocation (RFC 7009), introspection (RFC 7662) and the
token endpoint (RFC 8693 exchange, RFC 6749 refresh). Nothing reads the database: how the
provider remembers a revocation is its own business, what a client and a resource server
see afterwards is what these tests hold it to.

The seed's chain: ``chain[0]`` is the user's token, issued to agent1 and addressed to it;
``chain[1]`` is agent1's exchange for agent2, ``chain[2]`` agent2's for the MCP server,
``chain[3]`` the MCP server's for the resource server. Each exchanged token is issued to the
client that asked for it (its ``client_id`` claim).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest

from tests.conftest import authorize_code, code_form
from tests.helpers import assert_oauth_error, decode

pytestmark = pytest.mark.rfc("7009-2.1")

# Who exchanges a token with this audience, and toward which next hop.
NEXT_HOP = {
    "https://agent1.example.com": ("agent1", "https://agent2.example.com"),
    "https://agent2.example.com": ("agent2", "https://mcp-server1.example.com"),
    "https://mcp-server1.example.com": ("mcp-server1", "https://resource-server.example.com"),
}


def exchange_onward(exchange: Any, token: str) -> Any:
    """The next hop's exchange of ``token`` (None for the resource server's, which nothing
    exchanges)."""
    hop = NEXT_HOP.get(decode(token)[1]["aud"])
    return None if hop is None else exchange(hop[0], token, hop[1])


def assert_refused_as_subject(response: Any) -> None:
    """RFC 8693 section 2.2.2: a subject token that is not active is invalid_request."""
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_revoking_a_token_makes_it_and_every_token_exchanged_from_it_inactive(
    depth, chain, exchange, revoke_endpoint, is_active, agent_for
):
    """Revoked by the client it was issued to: that token and all below it are inactive at
    introspection and refused as the subject of the next exchange; the tokens above it
    (its parent and theirs) stay active and keep working."""
    token = chain[depth]
    response = revoke_endpoint(token, agent_for(token))
    assert response.status_code == 200, response.content

    for below in chain[depth:]:
        assert not is_active(below)
        refused = exchange_onward(exchange, below)
        if refused is not None:
            assert_refused_as_subject(refused)
    for above in chain[:depth]:
        assert is_active(above)
        again = exchange_onward(exchange, above)
        assert again.status_code == 200, again.content


def test_a_revoked_token_is_inactive_to_its_audience_too(cast, chain, revoke_endpoint, introspect, agent_for):
    """The audience of a revoked token (the next hop, which would introspect it) sees it
    inactive as well: the answer does not depend on who asks."""
    assert introspect(chain[1], cast["agent2"]).json()["active"] is True
    assert revoke_endpoint(chain[1], agent_for(chain[1])).status_code == 200
    assert introspect(chain[1], cast["agent2"]).json() == {"active": False}
    assert introspect(chain[2], cast["mcp-server1"]).json() == {"active": False}


def test_revoking_twice_is_still_200(chain, revoke_endpoint, is_active, agent_for):
    for _ in range(2):
        response = revoke_endpoint(chain[1], agent_for(chain[1]))
        assert response.status_code == 200, response.content
    assert not is_active(chain[1])


def test_a_token_exchanged_after_a_sibling_was_revoked_is_unaffected(
    cast, chain, exchange, revoke_endpoint, is_active, agent_for
):
    """Revocation takes a token's subtree, not its siblings: agent1's second exchange of the
    same user token lives on when the first is revoked."""
    sibling = exchange("agent1", chain[0], cast["agent2"].uri)
    assert sibling.status_code == 200, sibling.content
    sibling_token = sibling.json()["access_token"]
    assert revoke_endpoint(chain[1], agent_for(chain[1])).status_code == 200
    assert is_active(sibling_token)
    onward = exchange("agent2", sibling_token, cast["mcp-server1"].uri)
    assert onward.status_code == 200, onward.content


@pytest.mark.rfc("7009-2.2")
@pytest.mark.parametrize("kind", ["random", "jwt_shaped", "tampered", "empty_hint_random"])
def test_an_unknown_or_invalid_token_is_200_and_revokes_nothing(
    kind, cast, chain, revoke_endpoint, is_active
):
    """RFC 7009 section 2.2: "invalid tokens do not cause an error response"."""
    if kind in ("random", "empty_hint_random"):
        token = secrets.token_urlsafe(32)
    elif kind == "jwt_shaped":
        token = "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl"
    else:
        head, body, signature = chain[1].split(".")
        token = f"{head}.{body}.{signature[:-4]}AAAA"
    hint = None if kind == "empty_hint_random" else "access_token"
    response = revoke_endpoint(token, cast["agent1"], hint=hint)
    assert response.status_code == 200, response.content
    assert all(is_active(t) for t in chain)


@pytest.mark.parametrize("revoker", ["agent2", "mcp-server1", "plain-client"])
def test_a_token_revoked_by_a_client_it_was_not_issued_to_stays_active(
    revoker, clients, chain, exchange, revoke_endpoint, is_active, agent_for
):
    """RFC 7009 section 2.1: the server "verifies whether the token was issued to the client
    making the revocation request". ``chain[1]`` was issued to agent1: neither its audience
    (agent2), nor another agent, nor a confidential client that is no agent can revoke it.
    The answer is the one an unknown token gets, so it does not tell that the token exists."""
    token = chain[1]
    response = revoke_endpoint(token, clients[revoker])
    unknown = revoke_endpoint(secrets.token_urlsafe(32), clients[revoker])
    assert (response.status_code, response.content) == (unknown.status_code, unknown.content)
    assert all(is_active(t) for t in chain)
    onward = exchange_onward(exchange, token)
    assert onward.status_code == 200, onward.content
    # It was there all along: the client it was issued to revokes it.
    assert revoke_endpoint(token, agent_for(token)).status_code == 200
    assert not is_active(token)


@pytest.mark.parametrize(
    "hint",
    [
        "access_token",
        None,
        "refresh_token",  # the wrong type: the search extends to the others (section 2.1)
        "id_token",  # a hint this server does not know is ignored (section 2.1)
        "urn:example:unknown-type",
    ],
)
def test_token_type_hint_values_are_accepted(hint, chain, revoke_endpoint, is_active, agent_for):
    response = revoke_endpoint(chain[1], agent_for(chain[1]), hint=hint)
    assert response.status_code == 200, response.content
    assert not is_active(chain[1]) and not is_active(chain[2])
    assert is_active(chain[0])


@pytest.mark.parametrize("credentials", ["none", "wrong_secret", "client_id_only", "unknown_client"])
def test_an_unauthenticated_revocation_is_401_and_revokes_nothing(
    credentials, client, cast, chain, is_active
):
    """RFC 7009 section 2.1 and RFC 6749 section 5.2: a confidential client authenticates;
    failing that, 401 invalid_client with a challenge, and the token lives on."""
    agent = cast["agent1"]
    form = {"token": chain[1], "token_type_hint": "access_token"}
    headers: dict[str, str] = {}
    if credentials == "wrong_secret":
        headers["HTTP_AUTHORIZATION"] = _basic(agent.client_id, "wrong")
    elif credentials == "client_id_only":
        form["client_id"] = agent.client_id
    elif credentials == "unknown_client":
        headers["HTTP_AUTHORIZATION"] = _basic("no-such-client", "whatever")
    response = client.post("/o/revoke_token/", form, **headers)
    assert_oauth_error(response, 401, "invalid_client")
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert all(is_active(t) for t in chain)


def test_revoking_a_refresh_token_ends_its_access_token_and_the_tokens_exchanged_from_it(
    cast, client, token_endpoint, exchange, revoke_endpoint, is_active
):
    """RFC 7009 section 2.1: revoking a refresh token SHOULD also invalidate the access tokens
    of the same grant. Here they are the user's token and, below it, the exchanged ones; and
    the refresh token itself no longer refreshes."""
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    issued = token_endpoint(code_form(agent, code, verifier), agent)
    assert issued.status_code == 200, issued.content
    user_token, refresh_token = issued.json()["access_token"], issued.json()["refresh_token"]
    exchanged = exchange("agent1", user_token, cast["agent2"].uri)
    assert exchanged.status_code == 200, exchanged.content

    response = revoke_endpoint(refresh_token, agent, hint="refresh_token")
    assert response.status_code == 200, response.content
    refreshed = token_endpoint({"grant_type": "refresh_token", "refresh_token": refresh_token}, agent)
    assert_oauth_error(refreshed, 400, "invalid_grant")
    assert not is_active(user_token)
    assert not is_active(exchanged.json()["access_token"])


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
