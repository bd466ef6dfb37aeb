"""The delegation policy at the token endpoint: rules, chain rules and reason codes over HTTP.

Each refusal is checked for its OAuth error, its machine-readable reason in the
audit record, a plain ``error_description`` that names no party, and that
nothing was issued.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from oauth2_provider.models import get_application_model

from delegation_idp import jose
from delegation_idp.models import AuditEvent, DelegationRule, Party
from delegation_idp.provider.keys import keyset
from tests.helpers import assert_oauth_error, decode, snapshot

from .conftest import SCOPE


def refused(world, response, status, error, reason):
    body = assert_oauth_error(response, status, error)
    event = AuditEvent.objects.order_by("-id").first()
    assert event.decision == "denied" and event.error == error and event.reason == reason, (
        event.reason,
        event.error,
    )
    assert "example.com" not in body["error_description"], "descriptions must not name parties"
    return body


def granted(response) -> tuple[str, dict]:
    if response.status_code != 200:
        event = AuditEvent.objects.order_by("-id").first()
        raise AssertionError((response.content, event and event.reason))
    token = response.json()["access_token"]
    return token, decode(token)[1]


def resign(token: str, **changes) -> str:
    claims = decode(token)[1]
    claims.update(changes)
    return jose.sign(claims, keyset.signing_key())


# -- a five-hop chain ------------------------------------------------------------------

HOPS = 5


@pytest.fixture
def five(world):
    """user -> a1 -> a2 -> a3 -> a4 -> a5 -> rs, one rule per hop."""
    agents = [world.agent(f"a{i}") for i in range(1, HOPS + 1)]
    world.resource("rs")
    targets = [*agents[1:], world.party("rs")]
    rules = []
    for i, (agent, target) in enumerate(zip(agents, targets, strict=True)):
        rules.append(
            world.rule(
                agent,
                [target],
                direct=i == 0,
                upstream=[agents[i - 1]] if i else [],
                description=f"hop {i + 1}",
            )
        )
    return agents, targets, rules


def play(world, agents, targets, token):
    """Run the chain; returns the issued tokens' claims and the first refusal (or None)."""
    issued = []
    for agent, target in zip(agents, targets, strict=True):
        response = world.exchange(agent, token, target)
        if response.status_code != 200:
            return issued, response
        token, claims = granted(response)
        issued.append(claims)
    return issued, None


def test_five_hop_chain_is_allowed_by_rules(world, five):
    agents, targets, _ = five
    issued, refusal = play(world, agents, targets, world.user_token(agents[0]))
    assert refusal is None and len(issued) == HOPS
    last = issued[-1]
    assert last["aud"] == "https://rs.example.com" and last["sub"] == "alice@example.com"
    act, chain = last["act"], []
    while act:
        chain.append(act["sub"])
        act = act.get("act")
    assert chain == [a.uri for a in reversed(agents)]
    for parent, child in zip(issued, issued[1:], strict=False):
        assert set(child["scope"].split()) <= set(parent["scope"].split())


@pytest.mark.parametrize("removed", range(1, HOPS + 1), ids=lambda n: f"without-rule-{n}")
def test_five_hop_chain_is_refused_at_the_hop_whose_rule_is_removed(world, five, removed):
    agents, targets, rules = five
    rules[removed - 1].delete()
    token = world.user_token(agents[0])
    issued, refusal = play(world, agents, targets, token)
    assert len(issued) == removed - 1, "every hop before the removed rule still works"
    before = snapshot()
    refused(world, refusal, 400, "invalid_target", "no_rule")
    assert snapshot() == before


def test_sixth_hop_exceeds_the_global_depth(world, five):
    agents, targets, rules = five
    a6 = world.agent("a6")
    rules[-1].audiences.add(world.party(a6))
    world.rule(a6, ["rs"], upstream=[agents[-1]])
    issued, refusal = play(
        world, [*agents, a6], [*targets[:-1], a6, world.party("rs")], world.user_token(agents[0])
    )
    assert len(issued) == HOPS and refusal is not None
    refused(world, refusal, 400, "invalid_request", "depth_exceeded")


def test_global_depth_is_a_setting(world, five, settings):
    agents, targets, rules = five
    a6 = world.agent("a6")
    rules[-1].audiences.add(world.party(a6))
    world.rule(a6, ["rs"], upstream=[agents[-1]])
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "MAX_DELEGATION_DEPTH": 6}
    issued, refusal = play(
        world, [*agents, a6], [*targets[:-1], a6, world.party("rs")], world.user_token(agents[0])
    )
    assert refusal is None and len(issued) == 6


def test_rule_depth_limits_where_an_agent_may_act(world, five):
    agents, targets, rules = five
    rules[2].max_depth = 2  # a3 acts at depth 3
    rules[2].save()
    issued, refusal = play(world, agents, targets, world.user_token(agents[0]))
    assert len(issued) == 2
    # A rule that names the target but not at this depth reads like no rule at all.
    refused(world, refusal, 400, "invalid_target", "rule_depth_exceeded")


# -- one hop, each rule --------------------------------------------------------------------


@pytest.fixture
def pair(world):
    """a1 holds a user token; a1 may hand it to a2 (rule), a2 to rs (rule, upstream a1)."""
    a1, a2 = world.agent("a1"), world.agent("a2")
    world.resource("rs")
    r1 = world.rule(a1, [a2], direct=True)
    r2 = world.rule(a2, ["rs"], upstream=[a1])
    return a1, a2, r1, r2


def test_disabled_requester(world, pair):
    a1, a2, *_ = pair
    token = world.user_token(a1)
    Party.objects.filter(uri=a1.uri).update(enabled=False)
    refused(world, world.exchange(a1, token, a2), 400, "unauthorized_client", "actor_disabled")


def test_disabled_actor_earlier_in_the_chain_stops_it(world, pair):
    a1, a2, *_ = pair
    token, _ = granted(world.exchange(a1, world.user_token(a1), a2))
    # Bypass the signal that would also revoke a1's tokens: the policy check alone must stop it.
    Party.objects.filter(uri=a1.uri).update(enabled=False)
    refused(
        world,
        world.exchange(a2, token, "https://rs.example.com"),
        400,
        "invalid_request",
        "chain_actor_disabled",
    )


def test_disabling_an_actor_in_the_admin_way_revokes_and_stops_the_chain(world, pair):
    a1, a2, *_ = pair
    token, _ = granted(world.exchange(a1, world.user_token(a1), a2))
    party = world.party(a1)
    party.enabled = False
    party.save()
    refused(
        world, world.exchange(a2, token, "https://rs.example.com"), 400, "invalid_request", "subject_revoked"
    )


def test_disabled_target(world, pair):
    a1, a2, *_ = pair
    Party.objects.filter(uri=a2.uri).update(enabled=False)
    refused(world, world.exchange(a1, world.user_token(a1), a2), 400, "invalid_target", "target_unknown")


def test_unknown_and_forbidden_targets_are_indistinguishable(world, pair):
    a1, *_ = pair
    token = world.user_token(a1, "tasks.read")
    bodies = []
    for audience in ("https://nobody.example.com", "https://rs.example.com"):
        for scope in (None, "tasks.read admin"):
            extra = {"scope": scope} if scope else {}
            bodies.append(
                assert_oauth_error(world.exchange(a1, token, audience, **extra), 400, "invalid_target")
            )
    assert all(body == bodies[0] for body in bodies)


def test_no_rule_at_all(world, pair):
    a1, a2, r1, _ = pair
    DelegationRule.objects.filter(actor__uri=a1.uri).delete()
    refused(world, world.exchange(a1, world.user_token(a1), a2), 400, "invalid_target", "no_rule")


def test_audience_not_permitted(world, pair):
    a1, *_ = pair
    refused(
        world,
        world.exchange(a1, world.user_token(a1), "https://rs.example.com"),
        400,
        "invalid_target",
        "audience_not_permitted",
    )


def test_resource_indicator_maps_to_a_permitted_audience(world, pair):
    a1, a2, *_ = pair
    Party.objects.filter(uri=a2.uri).update(resource_prefixes="https://api.agent2.example.com/v1")
    _, claims = granted(
        world.exchange(a1, world.user_token(a1), resource="https://api.agent2.example.com/v1/tasks")
    )
    assert claims["aud"] == a2.uri


def test_upstream_not_permitted(world, pair):
    a1, a2, _, r2 = pair
    a3 = world.agent("a3")
    r2.upstream_actors.set([world.party(a3)])
    token, _ = granted(world.exchange(a1, world.user_token(a1), a2))
    refused(
        world,
        world.exchange(a2, token, "https://rs.example.com"),
        400,
        "invalid_target",
        "upstream_not_permitted",
    )


def test_not_directly_from_a_user_token(world, pair):
    a1, a2, r1, _ = pair
    r1.allow_direct_from_user = False
    r1.save()
    refused(
        world, world.exchange(a1, world.user_token(a1), a2), 400, "invalid_target", "upstream_not_permitted"
    )


def test_user_not_permitted_and_group_permitted(world, pair, django_user_model):
    a1, a2, r1, _ = pair
    bob = django_user_model.objects.create_user("bob", "bob@example.com", "pw-bob-123")
    r1.users.set([bob])
    token = world.user_token(a1)
    refused(world, world.exchange(a1, token, a2), 400, "invalid_target", "user_not_permitted")
    granted(world.exchange(a1, world.user_token(a1, user=bob), a2))
    team = Group.objects.create(name="team")
    world.user.groups.add(team)
    r1.groups.set([team])
    granted(world.exchange(a1, token, a2))


@pytest.mark.parametrize(
    "change",
    [
        {"enabled": False},
        {"valid_until": timezone.now() - timedelta(minutes=1)},
        {"valid_from": timezone.now() + timedelta(hours=1)},
    ],
    ids=["disabled", "expired", "not-yet"],
)
def test_rule_not_in_effect(world, pair, change):
    a1, a2, r1, _ = pair
    DelegationRule.objects.filter(pk=r1.pk).update(**change)
    refused(world, world.exchange(a1, world.user_token(a1), a2), 400, "invalid_target", "rule_not_in_effect")


def test_rule_within_its_validity_window(world, pair):
    a1, a2, r1, _ = pair
    now = timezone.now()
    DelegationRule.objects.filter(pk=r1.pk).update(
        valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(hours=1)
    )
    granted(world.exchange(a1, world.user_token(a1), a2))


def test_scope_beyond_the_subject_token(world, pair):
    a1, a2, *_ = pair
    token = world.user_token(a1, "tasks.read")
    refused(
        world,
        world.exchange(a1, token, a2, scope="tasks.read tasks.write"),
        400,
        "invalid_scope",
        "scope_exceeds_subject",
    )


def test_scope_beyond_the_rule(world, pair):
    a1, a2, r1, _ = pair
    r1.max_scope = "tasks.read"
    r1.save()
    token = world.user_token(a1)
    refused(
        world, world.exchange(a1, token, a2, scope="tasks.write"), 400, "invalid_scope", "scope_not_permitted"
    )
    _, claims = granted(world.exchange(a1, token, a2))
    assert claims["scope"] == "tasks.read", "without a scope parameter the rule narrows the subject's scope"


def test_scope_only_narrows_from_hop_to_hop(world, pair):
    a1, a2, *_ = pair
    token, first = granted(world.exchange(a1, world.user_token(a1), a2, scope="tasks.read"))
    assert first["scope"] == "tasks.read"
    refused(
        world,
        world.exchange(a2, token, "https://rs.example.com", scope=SCOPE),
        400,
        "invalid_scope",
        "scope_exceeds_subject",
    )
    _, second = granted(world.exchange(a2, token, "https://rs.example.com"))
    assert second["scope"] == "tasks.read"


def test_cycle_is_refused_unless_allowed_by_setting(world, pair, settings):
    a1, a2, r1, _ = pair
    a3 = world.agent("a3")
    world.rule(a2, [a1], upstream=[a1])
    r1.upstream_actors.set([world.party(a2)])
    r1.audiences.add(world.party(a3))
    t1, _ = granted(world.exchange(a1, world.user_token(a1), a2))
    t2, _ = granted(world.exchange(a2, t1, a1))
    refused(world, world.exchange(a1, t2, a3), 400, "invalid_request", "cycle")
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "ALLOW_REPEATED_ACTORS": True}
    _, claims = granted(world.exchange(a1, t2, a3))
    assert claims["act"] == {"sub": a1.uri, "act": {"sub": a2.uri, "act": {"sub": a1.uri}}}


# -- may_act and impersonation (RFC 8693 sections 4.4 and 1.1) ----------------------------


@pytest.mark.rfc("8693-4.4")
def test_may_act_naming_another_party_is_refused(world, pair):
    a1, a2, *_ = pair
    token = resign(world.user_token(a1), may_act={"sub": a2.uri})
    refused(world, world.exchange(a1, token, a2), 400, "invalid_request", "may_act_mismatch")


@pytest.mark.rfc("8693-4.4")
def test_may_act_with_a_foreign_issuer_is_refused(world, pair):
    a1, a2, *_ = pair
    token = resign(world.user_token(a1), may_act={"sub": a1.uri, "iss": "https://other-idp.example.net"})
    refused(world, world.exchange(a1, token, a2), 400, "invalid_request", "may_act_mismatch")


@pytest.mark.rfc("8693-4.4")
def test_may_act_is_honoured_and_never_copied(world, pair):
    a1, a2, *_ = pair
    token = resign(world.user_token(a1), may_act={"sub": a1.uri, "iss": "http://testserver"})
    t1, claims = granted(world.exchange(a1, token, a2))
    assert "may_act" not in claims and claims["act"] == {"sub": a1.uri}
    _, claims = granted(world.exchange(a2, t1, "https://rs.example.com"))
    assert "may_act" not in claims


@pytest.mark.rfc("8693-1.1")
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:jwt"},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"},
        {"actor_token": "self", "actor_token_type": "urn:ietf:params:oauth:token-type:access_token"},
    ],
    ids=["plain", "jwt", "access-token", "with-actor-token"],
)
def test_a_token_with_act_is_never_exchanged_as_impersonation(world, pair, token_endpoint, extra):
    a1, a2, *_ = pair
    t1, first = granted(world.exchange(a1, world.user_token(a1), a2))
    if extra.get("actor_token") == "self":
        # a2 proves who it is with a client-credentials token of its own.
        get_application_model().objects.filter(client_id=a2.client_id).update(
            authorization_grant_type="client-credentials"
        )
        response = token_endpoint({"grant_type": "client_credentials"}, a2)
        extra = {**extra, "actor_token": response.json()["access_token"]}
    _, claims = granted(world.exchange(a2, t1, "https://rs.example.com", **extra))
    assert claims["act"] == {"sub": a2.uri, "act": first["act"]}, "the earlier actor must never be dropped"
    assert claims["sub"] == first["sub"]


# -- policy is read on every request ----------------------------------------------------------


def test_policy_changes_take_effect_on_the_next_request(world, pair):
    a1, a2, r1, _ = pair
    token = world.user_token(a1)
    granted(world.exchange(a1, token, a2))
    r1.enabled = False
    r1.save()
    refused(world, world.exchange(a1, token, a2), 400, "invalid_target", "rule_not_in_effect")
    r1.enabled = True
    r1.save()
    granted(world.exchange(a1, token, a2))
    r1.audiences.clear()
    refused(world, world.exchange(a1, token, a2), 400, "invalid_target", "audience_not_permitted")


def test_audit_record_carries_the_decision(world, pair):
    a1, a2, r1, _ = pair
    granted(world.exchange(a1, world.user_token(a1), a2))
    event = AuditEvent.objects.order_by("-id").first()
    assert event.decision == "granted" and event.reason == "allowed"
    assert event.chain == [a1.uri] and event.granted_audience == [a2.uri]
