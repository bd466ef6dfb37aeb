"""Rule precedence: an actor's rules are tried by ``position`` (lowest first), the first that
allows decides, through the token endpoint, the policy cache and the dry run; reordering flips
the decision at once; migration 0011 numbers the rules that exist by id; ``createrule
--position``; a rule's title."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from delegation_idp.core import policy
from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider import dry_run, policy_store, precedence
from delegation_idp.provider import policy_triggers as triggers
from tests.helpers import decode

SCOPE = "tasks.read tasks.write"


@pytest.fixture
def two_rules(world: Any) -> dict[str, Any]:
    """alpha may reach the store by two rules: "narrow" (tasks.read) made first, "wide" (both
    scopes) made second, so by id and by position "narrow" comes first."""
    alpha = world.agent("alpha")
    store = world.resource("store")
    narrow = world.rule(alpha, [store], "tasks.read", direct=True, description="narrow")
    wide = world.rule(alpha, [store], SCOPE, direct=True, description="wide")
    return {"alpha": alpha, "store": store, "narrow": narrow, "wide": wide}


def granted(world: Any, agent: Any, token: str, store: Party) -> tuple[str, str]:
    response = world.exchange(agent, token, store)
    assert response.status_code == 200, response.content
    return response.json()["scope"], decode(response.json()["access_token"])[1]["scope"]


def test_new_rules_come_after_the_others(two_rules):
    assert (two_rules["narrow"].position, two_rules["wide"].position) == (1, 2)


def test_the_lowest_position_decides_and_a_reorder_flips_it_at_the_token_endpoint(world, two_rules):
    alpha, store = two_rules["alpha"], two_rules["store"]
    token = world.user_token(alpha)
    assert granted(world, alpha, token, store) == ("tasks.read", "tasks.read")
    # "wide" moves first: the very next request (cached policy and all) is decided by it.
    assert precedence.move(two_rules["wide"], precedence.UP)
    assert granted(world, alpha, token, store) == (SCOPE, SCOPE)
    assert list(
        DelegationRule.objects.filter(actor__uri=alpha.uri).values_list("description", "position")
    ) == [
        ("wide", 1),
        ("narrow", 2),
    ]
    assert not precedence.move(DelegationRule.objects.get(description="wide"), precedence.UP), "already first"


def test_position_not_id_orders_the_rules(world, two_rules):
    # "wide" has the higher id; with the lower position it decides.
    DelegationRule.objects.filter(pk=two_rules["wide"].pk).update(position=0)
    party = Party.objects.get(uri=two_rules["alpha"].uri)
    ctx, rules, limits = policy_store.load(
        party,
        (),
        [two_rules["store"].uri],
        subject_scope=policy.scope_set(SCOPE),
        requested_scope=None,
        user=world.user,
    )
    decision = policy.evaluate(ctx, rules, limits)
    assert decision.allowed and decision.rule_id == two_rules["wide"].pk
    assert decision.granted_scope == policy.scope_set(SCOPE)


def test_the_dry_run_follows_the_precedence(world, two_rules):
    party = Party.objects.get(uri=two_rules["alpha"].uri)

    def run() -> Any:
        return dry_run.try_delegation(
            party, (), [two_rules["store"].uri], subject_scope=policy.scope_set(SCOPE), user=world.user
        )

    first = run()
    assert first.decision.rule_id == two_rules["narrow"].pk
    assert [o.rule_id for o in first.explanation.rules] == [two_rules["narrow"].pk, two_rules["wide"].pk]
    precedence.move(two_rules["narrow"], precedence.DOWN)
    second = run()
    assert second.decision.rule_id == two_rules["wide"].pk
    assert " ".join(sorted(second.decision.granted_scope)) == SCOPE
    assert [o.rule_id for o in second.explanation.rules] == [two_rules["wide"].pk, two_rules["narrow"].pk]


def test_a_reorder_changes_the_policy_version(world, two_rules):
    alias = connection.alias
    assert triggers.installed(connection)
    before = policy_store._read_version(alias)
    precedence.move(two_rules["wide"], precedence.UP)
    assert policy_store._read_version(alias) != before


def test_place_inserts_and_renumbers(world, two_rules):
    alpha, store = two_rules["alpha"], two_rules["store"]
    third = world.rule(alpha, [store], "tasks.write", direct=True, description="third")
    assert precedence.place(third, 1) == 1
    order = DelegationRule.objects.filter(actor__uri=alpha.uri).values_list("description", "position")
    assert list(order) == [("third", 1), ("narrow", 2), ("wide", 3)]
    assert precedence.place(third, 99) == 3, "at most one past the last"


def test_createrule_position(world, two_rules):
    out = StringIO()
    call_command(
        "createrule",
        two_rules["alpha"].uri,
        "--audience",
        two_rules["store"].uri,
        "--scope",
        "tasks.write",
        "--from-user",
        "--description",
        "first now",
        "--position",
        "1",
        stdout=out,
    )
    assert "precedence 1" in out.getvalue()
    order = DelegationRule.objects.filter(actor__uri=two_rules["alpha"].uri).values_list(
        "description", flat=True
    )
    assert list(order) == ["first now", "narrow", "wide"]


def test_createrule_refuses_a_position_below_one(world, two_rules):
    with pytest.raises(CommandError, match="--position"):
        call_command(
            "createrule",
            two_rules["alpha"].uri,
            "--audience",
            two_rules["store"].uri,
            "--scope",
            "tasks.read",
            "--from-user",
            "--position",
            "0",
            stdout=StringIO(),
        )


def test_a_rule_is_titled_by_its_description_never_its_id(world, two_rules):
    assert str(two_rules["narrow"]) == "narrow"
    untitled = world.rule(two_rules["alpha"], [two_rules["store"]], "tasks.read", direct=True)
    assert str(untitled) == "alpha → store"
    assert str(untitled.pk) not in str(untitled)


# -- migration 0011 -------------------------------------------------------------------------

BEFORE = [("delegation_idp", "0010_trusted_issuer_services")]
AFTER = [("delegation_idp", "0011_rule_position")]


@pytest.mark.django_db(transaction=True)
def test_migration_0011_numbers_existing_rules_by_id_per_actor():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        apps = executor.loader.project_state(BEFORE).apps
        OldParty = apps.get_model("delegation_idp", "Party")
        OldRule = apps.get_model("delegation_idp", "DelegationRule")
        a = OldParty.objects.create(uri="https://a.example.com", name="A", kind="agent")
        b = OldParty.objects.create(uri="https://b.example.com", name="B", kind="agent")
        made = [
            OldRule.objects.create(actor=actor, max_scope="s", description=name)
            for actor, name in (
                (b, "b1"),
                (a, "a1"),
                (b, "b2"),
                (a, "a2"),
                (a, "a3"),
            )
        ]
        assert len(made) == 5
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        positions = dict(DelegationRule.objects.values_list("description", "position"))
        assert positions == {"a1": 1, "a2": 2, "a3": 3, "b1": 1, "b2": 2}
        assert triggers.installed(connection), "0011 remakes the table on SQLite: its triggers are back"
    finally:
        call_command("migrate", "delegation_idp", verbosity=0)
        policy_store.forget()
