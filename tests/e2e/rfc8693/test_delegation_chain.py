"""The seed's chain over the real token endpoint, claim by claim at every hop."""

from __future__ import annotations

import json
import time

import pytest

from delegation_idp.models import AuditEvent, TokenLineage
from tests.helpers import decode

ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.mark.rfc("9068-2.2")
def test_user_token_is_an_rfc9068_jwt_for_agent1(cast, user_token):
    header, claims = decode(user_token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"]
    assert set(header) == {"alg", "kid", "typ"}
    assert claims["iss"] == "http://testserver"
    assert claims["sub"] == "user@example.com"
    assert claims["aud"] == "https://agent1.example.com"
    assert claims["client_id"] == cast["agent1"].client_id
    assert claims["scope"] == "tasks.read tasks.write"
    assert "act" not in claims
    assert claims["exp"] > claims["iat"] >= int(time.time()) - 5
    assert len(claims["jti"]) >= 16


@pytest.mark.rfc("8693-4.1")
def test_seed_chain_claim_by_claim(cast, chain):
    user, to_agent2, to_mcp, to_resource = (decode(t)[1] for t in chain)

    assert to_agent2["sub"] == "user@example.com"
    assert to_agent2["aud"] == "https://agent2.example.com"
    assert to_agent2["act"] == {"sub": "https://agent1.example.com"}
    assert to_agent2["client_id"] == cast["agent1"].client_id

    assert to_mcp["sub"] == "user@example.com"
    assert to_mcp["aud"] == "https://mcp-server1.example.com"
    assert to_mcp["act"] == {
        "sub": "https://agent2.example.com",
        "act": {"sub": "https://agent1.example.com"},
    }
    assert to_mcp["client_id"] == cast["agent2"].client_id

    assert to_resource["sub"] == "user@example.com"
    assert to_resource["aud"] == "https://resource-server.example.com"
    assert to_resource["act"] == {
        "sub": "https://mcp-server1.example.com",
        "act": {"sub": "https://agent2.example.com", "act": {"sub": "https://agent1.example.com"}},
    }
    assert to_resource["client_id"] == cast["mcp-server1"].client_id

    jtis = [c["jti"] for c in (user, to_agent2, to_mcp, to_resource)]
    assert len(set(jtis)) == 4
    for parent, child in zip((user, to_agent2, to_mcp), (to_agent2, to_mcp, to_resource), strict=True):
        assert child["exp"] <= parent["exp"]
        assert set(child["scope"].split()) <= set(parent["scope"].split())
        assert child["iss"] == parent["iss"]


@pytest.mark.rfc("8693-2.2.1")
def test_exchange_response_shape(cast, user_token, exchange):
    response = exchange("agent1", user_token, cast["agent2"].uri)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == ACCESS
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "tasks.read tasks.write"
    claims = decode(body["access_token"])[1]
    assert abs((claims["exp"] - claims["iat"]) - body["expires_in"]) <= 1


def test_lineage_records_parent_and_root(cast, chain):
    claims = [decode(t)[1] for t in chain]
    rows = {row.jti: row for row in TokenLineage.objects.all()}
    root = rows[claims[0]["jti"]]
    assert root.parent_jti == "" and root.root_jti == root.jti and root.depth == 0
    for depth, (parent, child) in enumerate(zip(claims, claims[1:]), start=1):
        row = rows[child["jti"]]
        assert row.parent_jti == parent["jti"]
        assert row.root_jti == root.jti
        assert row.depth == depth
        assert row.path == f"{rows[parent['jti']].path}/{row.jti}"
        assert row.act == child["act"]
        assert row.user_id == cast.user.pk


def test_exchange_audit_records_grant(cast, chain):
    events = AuditEvent.objects.filter(event="token_exchange").order_by("id")
    assert events.count() == 3
    last = events.last()
    assert last.decision == "granted" and last.reason == "allowed"
    assert last.chain == [
        "https://mcp-server1.example.com",
        "https://agent2.example.com",
        "https://agent1.example.com",
    ]
    assert last.jti == decode(chain[3])[1]["jti"]
    assert last.parent_jti == decode(chain[2])[1]["jti"]
    assert last.granted_audience == ["https://resource-server.example.com"]
    assert last.client_id == cast["mcp-server1"].client_id
    assert last.subject == "user@example.com"


def test_subject_token_may_be_exchanged_more_than_once(cast, user_token, exchange):
    first = exchange("agent1", user_token, cast["agent2"].uri)
    second = exchange("agent1", user_token, cast["agent2"].uri)
    assert first.status_code == second.status_code == 200
    a, b = decode(first.json()["access_token"])[1], decode(second.json()["access_token"])[1]
    assert a["jti"] != b["jti"]
    parent = decode(user_token)[1]["jti"]
    assert TokenLineage.objects.filter(parent_jti=parent).count() == 2


@pytest.mark.rfc("8693-2.1")
def test_scope_narrows_on_request(cast, user_token, exchange):
    response = exchange("agent1", user_token, cast["agent2"].uri, scope="tasks.read")
    assert response.status_code == 200
    assert decode(response.json()["access_token"])[1]["scope"] == "tasks.read"


@pytest.mark.rfc("8707-2")
def test_resource_maps_to_registered_party(cast, user_token, exchange):
    response = exchange("agent1", user_token, None, resource="https://agent2.example.com/tasks/42")
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["aud"] == "https://agent2.example.com"


def test_an_exchanged_token_is_recorded_by_lineage_and_refused_by_dot_resource_protection(cast, chain):
    """An exchanged token's one record is its lineage row; django-oauth-toolkit's own resource
    protection on the identity site (which reads its AccessToken table) refuses it: it is
    addressed to another service. The user's own token, from DOT's grant, still passes."""
    from oauth2_provider.models import get_access_token_model
    from oauth2_provider.oauth2_validators import OAuth2Validator
    from oauthlib.common import Request

    from delegation_idp.models import TokenLineage
    from delegation_idp.provider.validators import DelegationValidator

    row = TokenLineage.objects.get(jti=decode(chain[1])[1]["jti"])
    assert row.client_id == cast["agent1"].client_id
    assert row.user == cast.user
    assert row.scope == "tasks.read tasks.write"
    assert not get_access_token_model().objects.filter(token__in=chain[1:]).exists()
    for validator in (OAuth2Validator(), DelegationValidator()):
        for token in chain[1:]:
            assert not validator.validate_bearer_token(token, [], Request("https://testserver/"))
        assert validator.validate_bearer_token(chain[0], ["tasks.read"], Request("https://testserver/"))


def test_token_response_never_contains_refresh_token(cast, chain, user_token, exchange):
    body = json.loads(exchange("agent1", user_token, cast["agent2"].uri).content)
    assert "refresh_token" not in body
