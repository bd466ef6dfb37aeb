"""RFC 9068 JWT access tokens for every grant the provider issues."""

from __future__ import annotations

import time

import pytest
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.models import TokenLineage
from delegation_idp.provider.keys import keyset
from tests.conftest import authorize_code, code_form
from tests.helpers import decode

REQUIRED = {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}


def verify(token: str) -> dict:
    """Verify as a resource server would: our key set, our issuer."""
    _header, claims = jose.verify(
        token,
        keyset.verification_key,
        algorithms=["ES256"],
        max_bytes=8192,
        max_header_bytes=1024,
        max_json_depth=16,
    )
    jose.validate_claims(claims, issuer=idp_settings.ISSUER, now=time.time(), leeway=0)
    return claims


@pytest.fixture
def service_client(db):
    Application = get_application_model()
    return Application.objects.create(
        name="billing service",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret="service-secret",
        hash_client_secret=True,
    )


@pytest.mark.rfc("9068-2.2")
def test_authorization_code_token_claims(cast, user_token):
    claims = verify(user_token)
    assert REQUIRED <= set(claims)
    assert claims["sub"] == "user@example.com"
    assert TokenLineage.objects.filter(jti=claims["jti"], grant_type="authorization_code").exists()


@pytest.mark.rfc("9068-2.2")
def test_client_credentials_token_names_the_client(service_client, token_endpoint):
    from tests.conftest import Agent

    agent = Agent("svc", service_client.client_id, "service-secret", "", "")
    response = token_endpoint({"grant_type": "client_credentials", "scope": "tasks.read"}, agent)
    assert response.status_code == 200, response.content
    header, _ = decode(response.json()["access_token"])
    claims = verify(response.json()["access_token"])
    assert header["typ"] == "at+jwt"
    # RFC 9068 section 2.2: without a resource owner, sub identifies the client, in a
    # namespace that no user subject can take.
    assert claims["sub"] == "urn:delegation-idp:client:" + service_client.client_id
    assert claims["client_id"] == service_client.client_id
    assert claims["aud"] == service_client.client_id
    assert claims["scope"] == "tasks.read"
    assert "act" not in claims


@pytest.mark.rfc("9068-2.2")
def test_refresh_grant_issues_a_new_jwt(cast, client, token_endpoint):
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    first = token_endpoint(
        code_form(agent, code, verifier),
        agent,
    ).json()
    assert "refresh_token" in first
    # Refresh tokens stay opaque; only access tokens are JWTs.
    assert first["refresh_token"].count(".") != 2
    refreshed = token_endpoint(
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, agent
    )
    assert refreshed.status_code == 200, refreshed.content
    old, new = verify(first["access_token"]), verify(refreshed.json()["access_token"])
    assert new["jti"] != old["jti"]
    assert new["sub"] == old["sub"] == "user@example.com"
    assert new["aud"] == "https://agent1.example.com"
    assert TokenLineage.objects.filter(jti=new["jti"], grant_type="refresh_token").exists()


@pytest.mark.rfc("8707-2")
def test_resource_indicator_becomes_the_audience(cast, client, token_endpoint):
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    response = token_endpoint(
        code_form(agent, code, verifier, resource="https://agent1.example.com/tasks"),
        agent,
    )
    assert response.status_code == 200, response.content
    assert verify(response.json()["access_token"])["aud"] == "https://agent1.example.com/tasks"


def test_every_issued_token_has_its_lineage_record(cast, chain):
    """Tokens of django-oauth-toolkit's grants keep its row, linked to their lineage; an
    exchanged token's lineage row is its only record."""
    from delegation_idp.models import TokenLineage

    AccessToken = get_access_token_model()
    row = AccessToken.objects.get(token=chain[0])
    assert row.delegation_lineage.jti == decode(chain[0])[1]["jti"]
    for token in chain[1:]:
        lineage = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
        assert lineage.access_token_id is None and lineage.grant_type.endswith("token-exchange")
        assert not AccessToken.objects.filter(token=token).exists()


def test_opaque_tokens_for_non_agents_when_configured(service_client, token_endpoint, settings):
    from tests.conftest import Agent

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "JWT_ACCESS_TOKENS": "agents"}
    agent = Agent("svc", service_client.client_id, "service-secret", "", "")
    response = token_endpoint({"grant_type": "client_credentials"}, agent)
    assert response.status_code == 200
    assert response.json()["access_token"].count(".") != 2
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "JWT_CLIENT_IDS": [service_client.client_id]}
    response = token_endpoint({"grant_type": "client_credentials"}, agent)
    assert verify(response.json()["access_token"])["client_id"] == service_client.client_id


@pytest.mark.rfc("8707-2")
def test_agent_cannot_address_its_own_token_to_another_party(cast, client, token_endpoint):
    """Another party is reached by token exchange, or by a user's authorization at the
    authorization endpoint under a rule "directly from a user token" (tests/e2e/rfc8707):
    agent1 has no rule for the resource server, and this code was not authorized for it."""
    from tests.helpers import assert_oauth_error, snapshot

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    before = snapshot()
    response = token_endpoint(
        code_form(agent, code, verifier, resource=cast.resource_server),
        agent,
    )
    assert_oauth_error(response, 400, "invalid_target")
    assert snapshot() == before
