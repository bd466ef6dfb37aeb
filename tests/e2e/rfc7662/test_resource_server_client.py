"""A resource server that links a client introspects tokens addressed to it, and only those."""

from __future__ import annotations

import base64

import pytest
from oauth2_provider.models import get_application_model

from delegation_idp.models import Party
from tests.helpers import assert_oauth_error, decode

SECRET = "resource-server-introspection-secret-0123456789"


@pytest.fixture
def resource_client(cast):
    Application = get_application_model()
    app = Application.objects.create(
        name="resource server",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=SECRET,
        hash_client_secret=True,
    )
    party = Party.objects.get(uri=cast.resource_server)
    party.application = app
    party.full_clean()
    party.save()
    return app


def basic(client_id: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{SECRET}".encode()).decode()


@pytest.mark.rfc("7662-2.2")
def test_resource_server_introspects_tokens_addressed_to_it(client, cast, chain, resource_client):
    auth = basic(resource_client.client_id)
    own = client.post("/o/introspect/", {"token": chain[3]}, HTTP_AUTHORIZATION=auth).json()
    assert own["active"] is True
    assert own["aud"] == cast.resource_server
    assert own["act"] == decode(chain[3])[1]["act"]
    # A token addressed to another party is inactive to it.
    other = client.post("/o/introspect/", {"token": chain[2]}, HTTP_AUTHORIZATION=auth).json()
    assert other == {"active": False}


def test_resource_server_client_cannot_exchange(cast, chain, token_endpoint, resource_client):
    from tests.conftest import ACCESS_TOKEN_TYPE, Agent

    agent = Agent("rs", resource_client.client_id, SECRET, cast.resource_server, "")
    response = token_endpoint(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": chain[3],
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "https://agent1.example.com",
        },
        agent,
    )
    assert_oauth_error(response, 400, "unauthorized_client")


def test_disabled_agent_gets_no_token_by_other_grants(cast, client, token_endpoint):
    from tests.conftest import authorize_code, code_form

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    Party.objects.filter(uri=agent.uri).update(enabled=False)
    response = token_endpoint(
        code_form(agent, code, verifier),
        agent,
    )
    assert_oauth_error(response, 400, "unauthorized_client")
