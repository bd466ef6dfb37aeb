"""A fixed, small number of database queries per token exchange, whatever the
chain depth and however many rules, audiences, users and groups the policy holds."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

# Measured 7 in the steady state (savepoints and transaction statements excluded): the
# application with its party (1); the subject token's lineage row with its user and the policy
# version (1); the AccessToken insert (1); the issuance re-check of parties, user, key and
# parent, locked, in one statement (1); the lineage insert (1); django-oauth-toolkit's own look-up
# of the issued token (1); the audit record (1). Parties and rules come from the per-process
# policy cache. One more when a rule names groups (the user's group membership).
MAX_EXCHANGE_QUERIES = 7
# The first exchange after any policy write reads the policy again: the parties (1), the
# requester's rules (1) and their audiences, upstream actors, users and groups (4).
MAX_COLD_EXCHANGE_QUERIES = MAX_EXCHANGE_QUERIES + 6


def queries_of(call: Any) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        result = call()
    statements = [q["sql"] for q in ctx.captured_queries]
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT", "ROLLBACK")
    return result, [s for s in statements if not s.upper().startswith(control)]


def test_exchange_query_count_is_fixed_and_small(cast: Any, user_token: str, exchange: Any) -> None:
    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200
    response, queries = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    assert response.status_code == 200, response.content
    assert len(queries) <= MAX_EXCHANGE_QUERIES, "\n".join(queries)


def test_exchange_after_a_policy_write_reads_the_policy_once(
    cast: Any, user_token: str, exchange: Any
) -> None:
    from delegation_idp.models import Party

    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200
    Party.objects.filter(uri=cast.resource_server).update(contact="ops@example.com")
    response, cold = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    assert response.status_code == 200, response.content
    _, warm = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    assert len(cold) <= MAX_COLD_EXCHANGE_QUERIES, "\n".join(cold)
    assert len(warm) == len(cold) - 6, "\n".join(warm)


def test_query_count_does_not_grow_with_depth(cast: Any, user_token: str, exchange: Any) -> None:
    counts = []
    token = user_token
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        exchange(name, token, target)  # the first exchange of each agent fills the policy cache
        response, queries = queries_of(lambda n=name, t=target, s=token: exchange(n, s, t))
        assert response.status_code == 200, response.content
        token = response.json()["access_token"]
        counts.append(len(queries))
    assert len(set(counts)) == 1, counts


def test_query_count_does_not_grow_with_the_policy(
    cast: Any, user_token: str, exchange: Any, django_user_model: Any
) -> None:
    """No N+1: more rules, audiences, users and groups cost no extra query."""
    from django.contrib.auth.models import Group

    from delegation_idp.models import Party
    from delegation_idp.provider.agents import allow

    agent1 = Party.objects.get(uri=cast["agent1"].uri)
    others = [Party.objects.create(uri=f"https://extra{i}.example.com", name=f"x{i}") for i in range(6)]
    # One rule naming a group first: group membership is then looked up (one query).
    allow(agent1, others[:1], "tasks.read").groups.set([Group.objects.create(name="first")])
    _, before = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    users = [django_user_model.objects.create_user(f"u{i}") for i in range(4)]
    groups = [Group.objects.create(name=f"g{i}") for i in range(3)]
    for i in range(5):
        rule = allow(agent1, others, "tasks.read", upstream=others[:3])
        rule.users.set([*users, cast.user] if i % 2 else users)
        rule.groups.set(groups)
    response, after = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    assert response.status_code == 200, response.content
    assert len(after) == len(before), "\n".join(after)


def test_steady_state_exchange_does_not_reload_keys_or_rehash(
    cast: Any, user_token: str, exchange: Any
) -> None:
    """The key set is cached per process (KEY_CACHE_SECONDS); client secrets need no password hash."""
    exchange("agent1", user_token, cast["agent2"].uri)
    _, queries = queries_of(lambda: exchange("agent1", user_token, cast["agent2"].uri))
    assert not [q for q in queries if "private_key" in q or "public_jwk" in q], queries


@pytest.mark.parametrize("change", ["rule_disabled", "party_disabled"])
def test_policy_changes_take_effect_on_the_next_request(
    cast: Any, user_token: str, exchange: Any, change: str
) -> None:
    """Policy is cached per process, but never across a policy write (tests/policy/test_cache.py)."""
    from delegation_idp.models import DelegationRule, Party

    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200
    if change == "rule_disabled":
        DelegationRule.objects.filter(actor__uri=cast["agent1"].uri).update(enabled=False)
    else:
        Party.objects.filter(uri=cast["agent2"].uri).update(enabled=False)
    response = exchange("agent1", user_token, cast["agent2"].uri)
    assert response.status_code == 400, response.content
