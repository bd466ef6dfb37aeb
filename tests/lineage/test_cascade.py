"""Cascading revocation: exactly the subtree, at every depth of the seed's chain (RFC 7009
section 2.1 through the endpoint, and the revocation API), and the agent, user and key cascades."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.lineage import revocation
from delegation_idp.models import Party, TokenLineage
from delegation_idp.provider import rotation
from tests.helpers import assert_oauth_error, decode

# Who exchanges a token with this audience, and for which next hop.
NEXT_HOP = {
    "https://agent1.example.com": ("agent1", "https://agent2.example.com"),
    "https://agent2.example.com": ("agent2", "https://mcp-server1.example.com"),
    "https://mcp-server1.example.com": ("mcp-server1", "https://resource-server.example.com"),
}


def jti(token: str) -> str:
    return decode(token)[1]["jti"]


@pytest.fixture
def forest(cast: Any, chain: list[str], exchange: Any) -> dict[str, str]:
    """The seed's chain t0..t3 plus one sibling s1..s3 at every exchanged depth:
    s_k has the same parent as t_k."""
    tokens = {f"t{i}": token for i, token in enumerate(chain)}
    for k in (1, 2, 3):
        parent = tokens[f"t{k - 1}"]
        agent, target = NEXT_HOP[decode(parent)[1]["aud"]]
        response = exchange(agent, parent, target)
        assert response.status_code == 200, response.content
        tokens[f"s{k}"] = response.json()["access_token"]
    return tokens


def descendants_of(name: str) -> set[str]:
    """The expected subtree of a chain token t_d: t_d..t3 and s_k for k > d."""
    depth = int(name[1])
    return {f"t{i}" for i in range(depth, 4)} | {f"s{k}" for k in range(depth + 1, 4)}


def can_exchange(exchange: Any, token: str) -> Any:
    aud = decode(token)[1]["aud"]
    if aud not in NEXT_HOP:
        return None  # the resource server's token: nothing exchanges it
    agent, target = NEXT_HOP[aud]
    return exchange(agent, token, target)


@pytest.mark.rfc("7009-2.1")
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("how", ["rfc7009", "api"])
def test_revoking_at_each_depth_revokes_exactly_the_subtree(
    depth, how, forest, exchange, is_active, agent_for, revoke_endpoint
):
    target = f"t{depth}"
    if how == "rfc7009":
        response = revoke_endpoint(forest[target], agent_for(forest[target]))
        assert response.status_code == 200
    else:
        revoked = revocation.revoke_subtree(jti(forest[target]))
        assert {jti(forest[n]) for n in descendants_of(target)} == set(revoked)

    expected_dead = descendants_of(target)
    for name, token in forest.items():
        assert is_active(token) is (name not in expected_dead), name
        row = TokenLineage.objects.get(jti=jti(token))
        if name in expected_dead:
            assert row.revoked_at is not None and row.revocation_reason == "revoked"
            assert row.access_token_id is None
            assert not get_access_token_model().objects.filter(token=token).exists()
        else:
            assert row.revoked_at is None
            # Lineage is an exchanged token's only record; other grants' tokens keep their
            # django-oauth-toolkit row.
            stored = get_access_token_model().objects.filter(token=token).exists()
            assert stored is (row.grant_type != TOKEN_EXCHANGE_GRANT), name

    # The exchange agrees with introspection: revoked tokens cannot be exchanged,
    # ancestors and siblings still can.
    for name, token in forest.items():
        response = can_exchange(exchange, token)
        if response is None:
            continue
        if name in expected_dead:
            body = assert_oauth_error(response, 400, "invalid_request")
            assert body["error_description"] == "The subject token is not active."
        else:
            assert response.status_code == 200, (name, response.content)


def test_revoking_twice_is_idempotent(forest):
    first = revocation.revoke_subtree(jti(forest["t1"]))
    assert len(first) == len(descendants_of("t1"))
    assert revocation.revoke_subtree(jti(forest["t1"])) == []
    assert revocation.revoke_subtree("unknown-jti") == []


@pytest.mark.parametrize("agent", ["agent1", "agent2", "mcp-server1"])
def test_disabling_an_agent_revokes_every_token_naming_it(agent, cast, forest, is_active, exchange):
    uri = cast[agent].uri
    names = {
        name
        for name, token in forest.items()
        if f"|{uri}|" in TokenLineage.objects.get(jti=jti(token)).parties
    }
    assert names, "the agent appears in the forest"
    party = Party.objects.get(uri=uri)
    party.enabled = False
    party.save()
    for name, token in forest.items():
        row = TokenLineage.objects.get(jti=jti(token))
        if name in names:
            assert row.revocation_reason == "party_disabled", name
            assert not is_active(token)
        elif any(row.path.startswith(TokenLineage.objects.get(jti=jti(forest[n])).path) for n in names):
            assert row.revoked_at is not None  # inside a revoked subtree
        else:
            assert row.revoked_at is None, name
            assert is_active(token)
    # The keycloak#52691 case: another (enabled) agent holding a token in whose chain
    # the disabled agent acted cannot re-exchange it.
    held = {"agent1": "t1", "agent2": "t2"}.get(agent)
    if held is not None:
        body = assert_oauth_error(can_exchange(exchange, forest[held]), 400, "invalid_request")
        assert body["error_description"] == "The subject token is not active."


def test_disabling_an_agent_revokes_its_refresh_tokens(cast, client, token_endpoint, issue_user_token):
    from tests.conftest import authorize_code, code_form

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    response = token_endpoint(
        code_form(agent, code, verifier),
        agent,
    )
    refresh = response.json()["refresh_token"]
    party = Party.objects.get(uri=agent.uri)
    party.enabled = False
    party.save()
    assert get_refresh_token_model().objects.get(token=refresh).revoked is not None
    response = token_endpoint({"grant_type": "refresh_token", "refresh_token": refresh}, agent)
    # The disabled agent is refused as a client before its (revoked) refresh token is read.
    assert_oauth_error(response, 400, "unauthorized_client")


def test_deleting_an_agent_revokes_its_tokens(cast, forest, is_active):
    Party.objects.get(uri=cast["mcp-server1"].uri).delete()
    for name in ("t2", "t3", "s2", "s3"):
        assert TokenLineage.objects.get(jti=jti(forest[name])).revocation_reason == "party_deleted"
    for name in ("t0", "t1", "s1"):
        assert is_active(forest[name]), name


def test_deleting_an_agents_application_revokes_the_tokens_issued_to_it(cast, forest, is_active):
    """Deleting a compromised client's application ends every token issued to it, exchanged
    tokens included (they have no AccessToken row that would cascade), with their subtrees."""
    from oauth2_provider.models import get_application_model

    get_application_model().objects.get(client_id=cast["agent2"].client_id).delete()
    for name in ("t2", "s2", "t3", "s3"):
        row = TokenLineage.objects.get(jti=jti(forest[name]))
        assert not row.is_active and row.revocation_reason == "client_deleted", name
    for name in ("t0", "t1", "s1"):
        assert is_active(forest[name]), name


def test_reenabling_does_not_resurrect(cast, forest, is_active):
    party = Party.objects.get(uri=cast["agent2"].uri)
    party.enabled = False
    party.save()
    party.enabled = True
    party.save()
    assert not is_active(forest["t1"])


@pytest.fixture
def other_users_token(cast: Any, issue_user_token: Any) -> str:
    other = get_user_model().objects.create_user("other", "other@example.com", "pw-other-123")
    return issue_user_token("agent1", user=other)


@pytest.mark.parametrize("how", ["deactivate", "delete"])
def test_user_deactivation_or_deletion_revokes_all_their_tokens(
    how, cast, forest, other_users_token, is_active, exchange
):
    user = cast.user
    if how == "deactivate":
        user.is_active = False
        user.save()
    else:
        user.delete()
    reason = "user_deactivated" if how == "deactivate" else "user_deleted"
    for name, token in forest.items():
        row = TokenLineage.objects.get(jti=jti(token))
        assert row.revoked_at is not None and row.revocation_reason == reason, name
        assert not is_active(token)
    assert not get_refresh_token_model().objects.filter(user_id=user.pk, revoked__isnull=True).exists()
    # Another user's token is untouched and still exchanges.
    assert is_active(other_users_token)
    assert exchange("agent1", other_users_token, cast["agent2"].uri).status_code == 200


def test_saving_an_inactive_user_again_revokes_nothing_more(cast, forest):
    user = cast.user
    user.is_active = False
    user.save()
    before = TokenLineage.objects.filter(revoked_at__isnull=False).count()
    user.first_name = "changed"
    user.save()
    assert TokenLineage.objects.filter(revoked_at__isnull=False).count() == before


def test_key_revocation_revokes_every_token_it_signed(cast, forest, is_active, issue_user_token, exchange):
    kid = decode(forest["t0"])[0]["kid"]
    assert {decode(t)[0]["kid"] for t in forest.values()} == {kid}
    rotation.revoke_key(kid)
    for name, token in forest.items():
        row = TokenLineage.objects.get(jti=jti(token))
        assert row.revocation_reason == "key_revoked", name
        assert not get_access_token_model().objects.filter(token=token).exists()
        assert not is_active(token)
    # A token issued afterwards is signed by the new key and works.
    fresh = issue_user_token()
    assert decode(fresh)[0]["kid"] != kid
    assert is_active(fresh)
    assert exchange("agent1", fresh, cast["agent2"].uri).status_code == 200
