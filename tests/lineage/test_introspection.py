"""RFC 7662 introspection with the nested act chain, only for the token's client or
audience (RFC 7662 section 4)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth2_provider.models import get_application_model

from delegation_idp import jose
from delegation_idp.lineage import revocation
from delegation_idp.models import TokenLineage
from tests.conftest import Agent
from tests.helpers import assert_oauth_error, decode

FIELDS = {"active", "iss", "sub", "aud", "exp", "iat", "scope", "client_id", "jti", "token_type"}


@pytest.mark.rfc("7662-2.2")
@pytest.mark.parametrize("hop", [0, 1, 2, 3])
def test_active_token_answer_has_every_field_and_the_nested_act(hop, chain, introspect, agent_for):
    token = chain[hop]
    claims = decode(token)[1]
    response = introspect(token, agent_for(token))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == FIELDS | ({"act"} if hop else set())
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    for name in FIELDS - {"active", "token_type"}:
        assert body[name] == claims[name], name
    if hop:
        assert body["act"] == claims["act"]


@pytest.mark.rfc("7662-2.2")
def test_the_deepest_act_chain_is_returned_whole(cast, chain, introspect):
    body = introspect(chain[3], cast["mcp-server1"]).json()
    assert body["act"] == {
        "sub": "https://mcp-server1.example.com",
        "act": {"sub": "https://agent2.example.com", "act": {"sub": "https://agent1.example.com"}},
    }


@pytest.mark.rfc("7662-2.1")
def test_the_audience_may_introspect_too(cast, chain, introspect):
    # chain[1] was requested by agent1 and is addressed to agent2.
    assert introspect(chain[1], cast["agent2"]).json()["active"] is True
    assert introspect(chain[2], cast["mcp-server1"]).json()["active"] is True


@pytest.mark.rfc("7662-2.2")
@pytest.mark.parametrize(
    ("hop", "stranger"), [(0, "agent2"), (0, "mcp-server1"), (1, "mcp-server1"), (3, "agent1"), (3, "agent2")]
)
def test_foreign_callers_see_inactive(hop, stranger, cast, chain, introspect):
    assert introspect(chain[hop], cast[stranger]).json() == {"active": False}


def _plain_client(name: str) -> Agent:
    Application = get_application_model()
    app = Application.objects.create(
        name=name,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret="plain-secret-for-tests",  # noqa: S106
        hash_client_secret=True,
    )
    return Agent(name, app.client_id, "plain-secret-for-tests", "", "")


def test_a_client_that_is_no_party_sees_inactive(chain, introspect):
    outsider = _plain_client("outsider")
    for token in chain:
        assert introspect(token, outsider).json() == {"active": False}


@pytest.mark.rfc("7662-2.2")
def test_revoked_tokens_are_inactive(cast, chain, introspect, agent_for):
    revocation.revoke_subtree(decode(chain[2])[1]["jti"])
    assert introspect(chain[1], agent_for(chain[1])).json()["active"] is True
    for token in chain[2:]:
        assert introspect(token, agent_for(token)).json() == {"active": False}


@pytest.mark.rfc("7662-2.2")
def test_expired_tokens_are_inactive(chain, introspect, agent_for, monkeypatch):
    token = chain[1]
    exp = decode(token)[1]["exp"]
    monkeypatch.setattr("delegation_idp.provider.views.time.time", lambda: exp + 1)
    assert introspect(token, agent_for(token)).json() == {"active": False}


def test_a_lineage_record_past_expiry_is_inactive(chain, introspect, agent_for):
    from datetime import timedelta

    from django.utils import timezone

    TokenLineage.objects.filter(jti=decode(chain[1])[1]["jti"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert introspect(chain[1], agent_for(chain[1])).json() == {"active": False}


def test_tokens_of_an_inactive_user_are_inactive(cast, chain, introspect, agent_for):
    user = get_user_model().objects.get(pk=cast.user.pk)
    user.is_active = False
    user.save()
    for token in chain:
        assert introspect(token, agent_for(token)).json() == {"active": False}


def test_a_token_signed_by_a_foreign_key_is_inactive(cast, chain, introspect):
    claims = decode(chain[0])[1]
    forged = jose.sign(claims, jose.generate_key("ES256"))
    assert introspect(forged, cast["agent1"]).json() == {"active": False}


def test_unknown_jti_with_a_valid_signature_is_inactive(cast, chain, introspect):
    from delegation_idp.provider.keys import keyset

    claims = {**decode(chain[0])[1], "jti": "never-issued-jti-000000"}
    token = jose.sign(claims, keyset.signing_key())
    assert introspect(token, cast["agent1"]).json() == {"active": False}


def test_oversized_token_is_inactive(cast, introspect, settings):
    limit = 8192
    assert introspect("a" * (limit + 1), cast["agent1"]).json() == {"active": False}
    assert introspect("a." * (limit // 2) + "a", cast["agent1"]).json() == {"active": False}


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(garbage=st.text(min_size=1, max_size=300).filter(lambda s: "\x00" not in s))
def test_garbage_is_inactive_never_an_error(cast, introspect, garbage):
    response = introspect(garbage, cast["agent1"])
    assert response.status_code == 200
    assert response.json() == {"active": False}


@pytest.mark.rfc("7662-2.1")
def test_unauthenticated_or_wrongly_authenticated_callers_get_401(cast, chain, introspect):
    assert_oauth_error(introspect(chain[0]), 401, "invalid_client")
    wrong = Agent("x", cast["agent1"].client_id, "wrong-secret", "", "")
    assert_oauth_error(introspect(chain[0], wrong), 401, "invalid_client")


@pytest.mark.rfc("7662-2.1")
def test_missing_token_parameter_is_invalid_request(cast, client):
    response = client.post("/o/introspect/", {}, HTTP_AUTHORIZATION=cast["agent1"].basic)
    assert_oauth_error(response, 400, "invalid_request")


def test_get_is_not_allowed(cast, client):
    response = client.get("/o/introspect/", {"token": "x"}, HTTP_AUTHORIZATION=cast["agent1"].basic)
    assert response.status_code == 405


def test_public_clients_cannot_introspect(chain, introspect):
    Application = get_application_model()
    app = Application.objects.create(
        name="public",
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://public.example.com/cb",
    )
    caller = Agent("public", app.client_id, "", "", "")
    assert introspect(chain[0], caller).status_code == 401


def test_metadata_names_this_endpoint(client):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["introspection_endpoint"] == "http://testserver/o/introspect/"
