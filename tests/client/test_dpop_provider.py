"""The agent client's DPoP against the real provider (its views over httpx, in the test's
transaction): every hop's key its own, bound tokens exchanged along the seed's chain, the
provider's nonces taken up."""

from __future__ import annotations

import httpx
import pytest

from delegation_idp.client import AgentClient, DPoPKey, InvalidDPoPProof
from delegation_idp.models import TokenLineage
from tests.conftest import authorize_code
from tests.helpers import decode, with_idp


@pytest.fixture
def agents(cast, provider) -> dict[str, AgentClient]:
    """The seed's three agents, each with a DPoP key of its own."""
    return {
        name: AgentClient(
            "http://testserver",
            agent.client_id,
            agent.client_secret,
            http=httpx.Client(transport=provider),
            dpop=True,
        )
        for name, agent in cast.agents.items()
    }


def bound_user_token(client, cast, agent1: AgentClient) -> dict:
    code, verifier = authorize_code(client, cast["agent1"], cast.user, cast.scope)
    return agent1.authorization_code(code, redirect_uri=cast["agent1"].redirect_uri, code_verifier=verifier)


@pytest.mark.rfc("9449-6.1")
def test_the_seed_chain_is_bound_hop_by_hop_to_each_requesters_own_key(client, cast, agents):
    user = bound_user_token(client, cast, agents["agent1"])
    assert user["token_type"] == "DPoP"
    tokens = [user["access_token"]]
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        result = agents[name].exchange(tokens[-1], audience=target)
        assert result.token_type == "DPoP" and result.jkt == agents[name].dpop_key.jkt
        tokens.append(result.access_token)
    requesters = ["agent1", "agent1", "agent2", "mcp-server1"]
    for token, name in zip(tokens, requesters, strict=True):
        claims = decode(token)[1]
        assert claims["cnf"] == {"jkt": agents[name].dpop_key.jkt}
        assert TokenLineage.objects.get(jti=claims["jti"]).jkt == agents[name].dpop_key.jkt
    assert len({a.dpop_key.jkt for a in agents.values()}) == 3


def test_a_holder_that_lost_its_key_cannot_exchange_its_bound_token(client, cast, agents, provider):
    user = bound_user_token(client, cast, agents["agent1"])["access_token"]
    agent = cast["agent1"]
    same_agent_new_key = AgentClient(
        "http://testserver",
        agent.client_id,
        agent.client_secret,
        http=httpx.Client(transport=provider),
        dpop=True,
    )
    with pytest.raises(InvalidDPoPProof):
        same_agent_new_key.exchange(user, audience=cast["agent2"].uri)
    bearer = AgentClient(
        "http://testserver", agent.client_id, agent.client_secret, http=httpx.Client(transport=provider)
    )
    with pytest.raises(InvalidDPoPProof):  # a bound subject is never exchanged without a proof
        bearer.exchange(user, audience=cast["agent2"].uri)
    # The key it kept (private JWK reloaded) still works.
    kept = AgentClient(
        "http://testserver",
        agent.client_id,
        agent.client_secret,
        http=httpx.Client(transport=provider),
        dpop=DPoPKey.from_jwk(agents["agent1"].dpop_key.private_jwk()),
    )
    assert kept.exchange(user, audience=cast["agent2"].uri).jkt == agents["agent1"].dpop_key.jkt


def test_a_bearer_agent_is_unchanged_and_a_bearer_subject_may_become_bound(
    user_token, cast, agents, provider
):
    agent = cast["agent1"]
    bearer = AgentClient(
        "http://testserver", agent.client_id, agent.client_secret, http=httpx.Client(transport=provider)
    )
    plain = bearer.exchange(user_token, audience=cast["agent2"].uri)
    assert plain.token_type == "Bearer" and plain.jkt is None and "cnf" not in decode(plain.access_token)[1]
    bound = agents["agent1"].exchange(user_token, audience=cast["agent2"].uri)
    assert bound.jkt == agents["agent1"].dpop_key.jkt


@pytest.mark.rfc("9449-8")
def test_the_providers_nonce_is_taken_up_once_and_reused(client, cast, agents, provider):
    with with_idp(DPOP_NONCE_LIFETIME=300):
        user = bound_user_token(client, cast, agents["agent1"])
        assert provider.count("/o/token/") == 2  # use_dpop_nonce, then the retry with it
        result = agents["agent1"].exchange(user["access_token"], audience=cast["agent2"].uri)
        assert provider.count("/o/token/") == 3  # the nonce kept: no second round trip
        agents["agent2"].exchange(result.access_token, audience=cast["mcp-server1"].uri)
        assert provider.count("/o/token/") == 5  # agent2 has nonces of its own to learn
