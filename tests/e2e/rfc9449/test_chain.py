"""Binding along the chain (RFC 9449 with RFC 8693): every hop's token bound to the key of the
hop that requested it; the audience exchanges it under its own authentication and key."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import AuditEvent, TokenLineage
from tests.conftest import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, Agent, authorize_code
from tests.helpers import assert_oauth_error, decode, snapshot

from .conftest import Prover


def form(subject: str, audience: str, **extra: Any) -> dict[str, Any]:
    return {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
        **extra,
    }


@pytest.fixture
def bound_chain(cast, bound_user_token, token_endpoint, keys_of) -> list[str]:
    """The seed's four hops, each requested with the requesting hop's own key."""
    tokens = [bound_user_token()["access_token"]]
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        response = token_endpoint(form(tokens[-1], target), cast[name], **keys_of[name].header())
        assert response.status_code == 200, response.content
        assert response.json()["token_type"] == "DPoP"
        tokens.append(response.json()["access_token"])
    return tokens


@pytest.mark.rfc("9449-6.1")
def test_every_hop_is_bound_to_its_own_key(cast, bound_chain, keys_of):
    requesters = ["agent1", "agent1", "agent2", "mcp-server1"]
    jkts = []
    for token, name in zip(bound_chain, requesters, strict=True):
        claims = decode(token)[1]
        assert claims["cnf"]["jkt"] == keys_of[name].jkt
        assert TokenLineage.objects.get(jti=claims["jti"]).jkt == keys_of[name].jkt
        jkts.append(claims["cnf"]["jkt"])
    assert len(set(jkts[1:])) == 3  # no key travels down the chain
    # the act chain is unchanged by binding
    assert decode(bound_chain[3])[1]["act"]["sub"] == cast["mcp-server1"].uri


@pytest.mark.rfc("9449-6.1")
def test_audit_records_each_hops_key(cast, bound_chain, keys_of):
    granted = AuditEvent.objects.filter(event="token_exchange", decision="granted").order_by("id")
    assert [e.jkt for e in granted] == [keys_of[n].jkt for n in ("agent1", "agent2", "mcp-server1")]


def test_holder_must_prove_the_bound_key(cast, bound_user_token, token_endpoint, prover):
    user_token = bound_user_token()["access_token"]  # agent1's, bound to agent1's key
    before = snapshot()
    response = token_endpoint(form(user_token, cast["agent2"].uri), cast["agent1"], **prover().header())
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_key_mismatch"


def test_bound_subject_is_never_exchanged_for_a_bearer_token(cast, bound_chain, token_endpoint):
    before = snapshot()
    # agent2 holds agent1's bound token addressed to it; without a proof it gets nothing
    response = token_endpoint(form(bound_chain[1], cast["mcp-server1"].uri), cast["agent2"])
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_bound_subject"


def test_bearer_subject_may_be_exchanged_for_a_bound_token(cast, user_token, token_endpoint, prover):
    key = prover()
    response = token_endpoint(form(user_token, cast["agent2"].uri), cast["agent1"], **key.header())
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["cnf"] == {"jkt": key.jkt}


def test_audience_exchanges_with_its_own_key_not_the_requesters(cast, bound_chain, token_endpoint, keys_of):
    # agent2 is T2's audience, not its holder: it never has agent1's key, and needs none
    own = keys_of["agent2"]
    response = token_endpoint(form(bound_chain[1], cast["mcp-server1"].uri), cast["agent2"], **own.header())
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("hop", [0, 1, 2, 3])
def test_stolen_token_cannot_be_exchanged_by_another_client(cast, bound_chain, token_endpoint, prover, hop):
    """A thief with its own key and credentials (another registered agent's) gains nothing."""
    thief = next(
        a
        for n, a in cast.agents.items()
        if n != "agent1" and a.uri not in str(decode(bound_chain[hop])[1]["aud"])
    )
    before = snapshot()
    response = token_endpoint(
        form(bound_chain[hop], "https://agent2.example.com"), thief, **prover().header()
    )
    assert response.status_code in (400, 401)
    assert "access_token" not in response.json()
    assert snapshot() == before


def test_stolen_token_without_credentials_is_refused(cast, bound_chain, token_endpoint, prover):
    response = token_endpoint(form(bound_chain[1], cast["mcp-server1"].uri), None, **prover().header())
    assert_oauth_error(response, 401, "invalid_client")


def test_lineage_key_must_match_the_subject(cast, bound_chain, token_endpoint, keys_of):
    """A token re-signed by our key with another cnf is not the token lineage recorded."""
    from delegation_idp import jose
    from delegation_idp.provider.keys import keyset

    claims = decode(bound_chain[1])[1]
    claims["cnf"] = {"jkt": keys_of["agent2"].jkt}
    forged = jose.sign(claims, keyset.signing_key())
    response = token_endpoint(
        form(forged, cast["mcp-server1"].uri), cast["agent2"], **keys_of["agent2"].header()
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert AuditEvent.objects.order_by("-id").first().reason == "subject_lineage_mismatch"


def test_bound_actor_token_needs_its_key(cast, bound_user_token, token_endpoint, prover, settings):
    """An actor token bound to a key is the requester's only with a proof by that key."""
    from oauth2_provider.models import get_application_model

    app = get_application_model().objects.get(client_id=cast["agent1"].client_id)
    app.authorization_grant_type = "client-credentials"
    app.save()
    key = prover()
    actor = token_endpoint({"grant_type": "client_credentials"}, cast["agent1"], **key.header())
    assert actor.status_code == 200, actor.content
    app.authorization_grant_type = "authorization-code"
    app.save()
    user_token = bound_user_token(key=key)["access_token"]
    extra = {"actor_token": actor.json()["access_token"], "actor_token_type": ACCESS_TOKEN_TYPE}
    response = token_endpoint(
        form(user_token, cast["agent2"].uri, **extra), cast["agent1"], **prover().header()
    )
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    ok = token_endpoint(form(user_token, cast["agent2"].uri, **extra), cast["agent1"], **key.header())
    assert ok.status_code == 200, ok.content


# -- refresh tokens of public clients (section 5) -----------------------------------------------


@pytest.fixture
def public_agent(db) -> Agent:
    from oauth2_provider.models import get_application_model

    app = get_application_model().objects.create(
        name="public",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://public.example.com/cb",
        client_secret="",
        hash_client_secret=False,
    )
    return Agent("public", app.client_id, "", "", "https://public.example.com/cb")


@pytest.fixture
def public_tokens(cast, client, token_endpoint, public_agent, prover) -> tuple[dict[str, Any], Prover]:
    code, verifier = authorize_code(client, public_agent, cast.user, "tasks.read")
    key = prover()
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": public_agent.redirect_uri,
        "code_verifier": verifier,
        "client_id": public_agent.client_id,
    }
    response = token_endpoint(data, None, **key.header())
    assert response.status_code == 200, response.content
    assert response.json()["token_type"] == "DPoP"
    return response.json(), key


def refresh(token_endpoint: Any, agent: Agent, refresh_token: str, **headers: Any) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": agent.client_id}
    return token_endpoint(data, None, **headers)


@pytest.mark.rfc("9449-5")
def test_public_refresh_token_is_bound_to_the_same_key(token_endpoint, public_agent, public_tokens):
    body, key = public_tokens
    response = refresh(token_endpoint, public_agent, body["refresh_token"], **key.header())
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["cnf"] == {"jkt": key.jkt}
    # the rotated refresh token is bound too
    again = refresh(token_endpoint, public_agent, response.json()["refresh_token"], **key.header())
    assert again.status_code == 200, again.content


@pytest.mark.rfc("9449-5")
def test_public_refresh_token_refused_with_another_key(token_endpoint, public_agent, public_tokens, prover):
    body, _key = public_tokens
    before = snapshot()
    response = refresh(token_endpoint, public_agent, body["refresh_token"], **prover().header())
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").first().reason == "dpop_key_mismatch"


@pytest.mark.rfc("9449-5")
def test_public_refresh_token_refused_without_a_proof(token_endpoint, public_agent, public_tokens):
    body, key = public_tokens
    before = snapshot()
    response = refresh(token_endpoint, public_agent, body["refresh_token"])
    assert_oauth_error(response, 400, "invalid_dpop_proof")
    assert snapshot() == before
    # still good for its own key afterwards
    assert refresh(token_endpoint, public_agent, body["refresh_token"], **key.header()).status_code == 200
