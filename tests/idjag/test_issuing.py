"""Leg 1: issuing an ID-JAG by RFC 8693 token exchange
(draft-ietf-oauth-identity-assertion-authz-grant sections 3 and 4.3)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.idjag import TOKEN_TYPE, TYP
from delegation_idp.models import AuditEvent, DelegationRule, Party, TokenLineage
from delegation_idp.provider import keys
from delegation_idp.rfc8693 import GRANT_TYPE
from tests.helpers import decode, with_idp
from tests.idjag.conftest import AS_ISSUER, MCP_RESOURCE

pytestmark = pytest.mark.usefixtures("id_jag_rule")


def verified(token: str) -> dict[str, Any]:
    """The ID-JAG's claims, its signature checked against the provider's own key set."""
    _header, claims = jose.verify(
        token,
        keys.keyset.verification_key,
        algorithms=["ES256", "RS256", "EdDSA"],
        max_bytes=8192,
        max_header_bytes=1024,
        max_json_depth=16,
        expected_typ=TYP,
    )
    jose.validate_claims(claims, issuer="http://testserver", now=time.time(), leeway=0, audience=AS_ISSUER)
    return claims


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3.2")
def test_the_response_carries_an_id_jag_with_token_type_n_a(request_id_jag, user_token, cast):
    response = request_id_jag("agent1", user_token, scope="tasks.read")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["issued_token_type"] == TOKEN_TYPE
    assert body["token_type"] == "N_A"
    assert body["scope"] == "tasks.read"
    assert 0 < body["expires_in"] <= 300
    assert decode(body["access_token"])[0]["typ"] == TYP


@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-3")
def test_the_id_jag_claims(request_id_jag, user_token, cast):
    subject = decode(user_token)[1]
    claims = verified(request_id_jag("agent1", user_token, scope="tasks.read").json()["access_token"])
    assert claims["iss"] == "http://testserver"
    assert claims["sub"] == subject["sub"]
    assert claims["aud"] == AS_ISSUER
    assert claims["client_id"] == cast["agent1"].client_id
    assert claims["resource"] == MCP_RESOURCE
    assert claims["scope"] == "tasks.read"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"] and claims["jti"] != subject["jti"]
    assert claims["act"] == {"sub": cast["agent1"].uri}
    assert "cnf" not in claims


def test_scope_defaults_to_what_the_rule_permits_of_the_subject(request_id_jag, user_token):
    # The subject holds tasks.read and tasks.write; the rule passes on tasks.read only.
    claims = decode(request_id_jag("agent1", user_token).json()["access_token"])[1]
    assert claims["scope"] == "tasks.read"


def test_without_resource_the_id_jag_names_none(request_id_jag, user_token):
    claims = decode(request_id_jag("agent1", user_token, resource=None).json()["access_token"])[1]
    assert "resource" not in claims
    assert claims["aud"] == AS_ISSUER


def test_the_lifetime_is_a_setting(request_id_jag, user_token):
    with with_idp(ID_JAG_LIFETIME=60):
        claims = decode(request_id_jag("agent1", user_token).json()["access_token"])[1]
    assert claims["exp"] - claims["iat"] == 60


def test_the_client_id_is_the_agents_at_the_authorization_server(request_id_jag, user_token, cast):
    Party.objects.filter(uri=AS_ISSUER).update(client_ids={cast["agent1"].uri: "agent-one-at-tools"})
    claims = decode(request_id_jag("agent1", user_token).json()["access_token"])[1]
    assert claims["client_id"] == "agent-one-at-tools"


def test_recorded_in_lineage_and_audit(request_id_jag, user_token, cast):
    parent = decode(user_token)[1]["jti"]
    claims = decode(request_id_jag("agent1", user_token).json()["access_token"])[1]
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert row.parent_jti == parent
    assert row.grant_type == GRANT_TYPE
    assert row.audience == [AS_ISSUER]
    assert f"|{AS_ISSUER}|" in row.parties
    event = AuditEvent.objects.get(jti=claims["jti"])
    assert (event.event, event.decision, event.reason) == ("token_exchange", "granted", "allowed")
    assert event.granted_audience == [AS_ISSUER]


def test_revoking_the_root_revokes_the_id_jag_and_stops_new_ones(
    request_id_jag, user_token, cast, revoke_endpoint
):
    claims = decode(request_id_jag("agent1", user_token).json()["access_token"])[1]
    assert revoke_endpoint(user_token, cast["agent1"]).status_code == 200
    assert TokenLineage.objects.get(jti=claims["jti"]).revoked_at is not None
    response = request_id_jag("agent1", user_token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_the_act_chain_is_carried(request_id_jag, user_token, exchange, cast, external_as):
    """An agent further down a chain obtains an ID-JAG: its ``act`` is the whole chain."""
    agent1, agent2 = (Party.objects.get(uri=cast[n].uri) for n in ("agent1", "agent2"))
    rule = DelegationRule.objects.create(actor=agent2, max_scope="tasks.read tasks.write")
    rule.audiences.set([external_as])
    rule.upstream_actors.set([agent1])
    delegated = exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"]
    response = request_id_jag("agent2", delegated, scope="tasks.write")
    assert response.status_code == 200, response.content
    claims = verified(response.json()["access_token"])
    assert claims["act"] == {"sub": cast["agent2"].uri, "act": {"sub": cast["agent1"].uri}}
    assert claims["client_id"] == cast["agent2"].client_id
    assert claims["sub"] == decode(user_token)[1]["sub"]


def test_the_id_jag_lives_no_longer_than_its_subject(request_id_jag, issue_user_token, settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ACCESS_TOKEN_EXPIRE_SECONDS": 100}
    subject = issue_user_token()
    claims = decode(request_id_jag("agent1", subject).json()["access_token"])[1]
    assert claims["exp"] <= decode(subject)[1]["exp"]


def test_the_signature_is_the_managed_key_sets(request_id_jag, user_token):
    token = request_id_jag("agent1", user_token).json()["access_token"]
    header = decode(token)[0]
    assert header["kid"] == keys.keyset.signing_key().kid
    with pytest.raises(jose.JoseError):
        keys.verify(token, now=time.time())  # explicit typing: never read as an access token
