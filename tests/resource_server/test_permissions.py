"""Permission classes: scopes, delegation depth, allowed and forbidden actors, direct user only."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.urls("tests.resource_server.urls")]

AGENT1 = "https://agent1.example.com"
AGENT2 = "https://agent2.example.com"
MCP = "https://mcp-server1.example.com"


def get(client, path, token):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def at_resource_server(chain, cast, resource_settings, use_validator):
    """The last hop's token (depth 3) at the resource server."""
    use_validator()
    return chain[3]


@pytest.mark.rfc("6750-3.1")
def test_missing_scope_is_403_insufficient_scope_with_challenge(client, at_resource_server):
    response = get(client, "/api/admin/", at_resource_server)
    assert response.status_code == 403
    params = dict(re.findall(r'(\w+)="([^"]*)"', response["WWW-Authenticate"]))
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "tasks.read tasks.admin"
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource")
    assert get(client, "/api/whoami/", at_resource_server).status_code == 200


def test_narrowed_scope_is_enforced(client, chain, cast, exchange, resource_settings, use_validator):
    use_validator()
    narrowed = exchange("mcp-server1", chain[2], cast.resource_server, scope="tasks.write")
    assert narrowed.status_code == 200, narrowed.content
    response = get(client, "/api/whoami/", narrowed.json()["access_token"])
    assert response.status_code == 403
    assert 'scope="tasks.read"' in response["WWW-Authenticate"]


def test_max_delegation_depth(client, at_resource_server):
    response = get(client, "/api/shallow/", at_resource_server)  # depth 3 > 2
    assert response.status_code == 403
    assert response.json()["detail"] == "The delegation chain is deeper than 2."
    assert "WWW-Authenticate" not in response  # a new token with the same chain would not help
    assert get(client, "/api/deep/", at_resource_server).status_code == 200  # depth 3 <= 3


def test_allowed_actors_apply_to_every_actor(client, at_resource_server):
    # agent1 and agent2 are allowed, the MCP server is not.
    assert get(client, "/api/trusted/", at_resource_server).status_code == 403


def test_allowed_actors_accept_a_chain_within_the_list(client, chain, cast, use_validator, resource_settings):
    use_validator(resource=MCP)  # agent2's token to the MCP server: chain agent2 <- agent1
    assert get(client, "/api/trusted/", chain[2]).status_code == 200


def test_forbidden_actors(client, at_resource_server, chain, use_validator):
    response = get(client, "/api/no-agent2/", at_resource_server)
    assert response.status_code == 403
    assert response.json()["detail"] == "An actor in the delegation chain is forbidden here."
    use_validator(resource=AGENT2)  # agent1's token to agent2: agent2 is the audience, not an actor
    assert get(client, "/api/no-agent2/", chain[1]).status_code == 200


def test_direct_user_only(client, chain, cast, resource_settings, use_validator):
    use_validator(resource=AGENT1)
    assert get(client, "/api/direct/", chain[0]).status_code == 200  # the user's own token
    use_validator(resource=AGENT2)
    response = get(client, "/api/direct/", chain[1])
    assert response.status_code == 403
    assert "not a delegated one" in response.json()["detail"]


def test_direct_user_only_refuses_a_client_credentials_token(
    client, cast, clients, token_endpoint, resource_settings, use_validator
):
    from oauth2_provider.models import get_application_model

    from delegation_idp.models import Party

    # An admin lets the plain client address its own tokens to the resource server.
    plain = get_application_model().objects.get(client_id=clients["plain-client"].client_id)
    Party.objects.get(uri=cast.resource_server).clients.add(plain)
    response = token_endpoint(
        {"grant_type": "client_credentials", "scope": "tasks.read", "resource": cast.resource_server},
        clients["plain-client"],
    )
    assert response.status_code == 200, response.content
    use_validator()
    refused = get(client, "/api/direct/", response.json()["access_token"])
    assert refused.status_code == 403
    assert "not a client's own token" in refused.json()["detail"]


def test_permissions_compose(client, at_resource_server):
    assert get(client, "/api/combined/", at_resource_server).status_code == 200


def test_permissions_refuse_requests_without_a_token(client, cast, resource_settings, use_validator):
    use_validator()
    for path in ("/api/direct/", "/api/shallow/", "/api/trusted/", "/api/no-agent2/"):
        response = client.get(path)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith('Bearer realm="api"')
