"""``manage.py createrule``: delegation rules from the command line, checked by the admin's form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError

from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider import policy_store
from tests.cli.conftest import SCOPE, run


def test_a_rule_with_every_field(parties: Any) -> None:
    Group.objects.create(name="ops")
    data = run(
        "createrule",
        "Beta",
        "--audience",
        "Store",
        "--audience",
        parties.alpha.uri,
        "--scope",
        "tasks.read  tasks.write",
        "--upstream",
        parties.alpha.client_id,
        "--from-user",
        "--max-depth",
        "2",
        "--user",
        "alice",
        "--group",
        "ops",
        "--valid-from",
        "2026-01-01T00:00:00Z",
        "--valid-until",
        "2027-01-01T00:00:00+00:00",
        "--description",
        "beta serves the store",
        "--json",
    ).json()
    assert data["created"] is True
    rule = DelegationRule.objects.get(pk=data["rule"]["id"])
    assert rule.actor.uri == parties.beta.uri
    assert {p.uri for p in rule.audiences.all()} == {parties.store.uri, parties.alpha.uri}
    assert rule.max_scope == "tasks.read tasks.write"  # normalised by the form
    assert [p.uri for p in rule.upstream_actors.all()] == [parties.alpha.uri]
    assert rule.allow_direct_from_user and rule.max_depth == 2 and rule.enabled
    assert [u.username for u in rule.users.all()] == ["alice"]
    assert [g.name for g in rule.groups.all()] == ["ops"]
    assert rule.valid_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert rule.valid_until == datetime(2027, 1, 1, tzinfo=UTC)
    assert rule.description == "beta serves the store"
    assert data["rule"] == {
        "id": rule.pk,
        "actor": parties.beta.uri,
        "description": "beta serves the store",
        "position": 1,
        "enabled": True,
        "in_effect": data["rule"]["in_effect"],
        "audiences": sorted([parties.store.uri, parties.alpha.uri]),
        "max_scope": "tasks.read tasks.write",
        "direct_from_user": True,
        "upstream_actors": [parties.alpha.uri],
        "max_depth": 2,
        "users": ["alice"],
        "groups": ["ops"],
        "valid_from": "2026-01-01T00:00:00+00:00",
        "valid_until": "2027-01-01T00:00:00+00:00",
        "approval": "never",
        "approval_scopes": [],
        "approval_min_depth": None,
        "approval_lifetime": None,
        "approval_reuse_seconds": 0,
    }


def test_text_output_names_the_rule(parties: Any) -> None:
    out = run("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user").stdout
    rule = DelegationRule.objects.get()
    assert out.startswith(f"Created rule {rule.pk}: to {parties.beta.uri}; scope {SCOPE}; from a user token")


def test_the_same_rule_twice_is_one_rule(parties: Any) -> None:
    args = ("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user", "--json")
    first = run(*args).json()
    again = run(*args[:-3], "tasks.write tasks.read", "--from-user", "--json").json()
    assert first["created"] is True and again["created"] is False
    assert again["rule"]["id"] == first["rule"]["id"]
    assert "Unchanged" in run(*args[:-1]).stdout
    assert DelegationRule.objects.count() == 1
    # Anything different is another rule.
    other = run("createrule", "Alpha", "--audience", "Beta", "--scope", "tasks.read", "--from-user", "--json")
    assert other.json()["created"] is True and DelegationRule.objects.count() == 2


@pytest.mark.parametrize(
    "args,message",
    [
        # The admin form's own checks, reported under the option that was wrong.
        (["--scope", SCOPE], "Allow it directly from a user token, or name upstream actors"),
        (
            ["--scope", 'tasks"read', "--from-user"],
            "--scope: Scopes are space-separated RFC 6749 scope tokens",
        ),
        (["--scope", "   ", "--from-user"], "--scope:"),
        (
            [
                "--scope",
                SCOPE,
                "--from-user",
                "--valid-from",
                "2027-01-01T00:00Z",
                "--valid-until",
                "2026-01-01",
            ],
            "--valid-until: The window must end after it starts",
        ),
        (
            ["--scope", SCOPE, "--from-user", "--valid-from", "next tuesday"],
            "--valid-from: Enter a valid date/time",
        ),
        (["--scope", SCOPE, "--from-user", "--max-depth", "-1"], "--max-depth:"),
        # Names that name nothing.
        (["--scope", SCOPE, "--from-user", "--user", "mallory"], "No user 'mallory'"),
        (["--scope", SCOPE, "--from-user", "--group", "nobody"], "No group 'nobody'"),
        (
            ["--scope", SCOPE, "--upstream", "Store"],
            "is a resource server .*: only an agent or an MCP server acts",
        ),
    ],
)
def test_what_the_admin_refuses_is_a_command_error(parties: Any, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("createrule", "Alpha", "--audience", "Beta", *args)
    assert not DelegationRule.objects.exists()


def test_unknown_or_ambiguous_parties_are_command_errors(parties: Any) -> None:
    with pytest.raises(CommandError, match="No registered party is named 'Gamma'"):
        run("createrule", "Alpha", "--audience", "Gamma", "--scope", SCOPE, "--from-user")
    with pytest.raises(CommandError, match="only an agent or an MCP server acts"):
        run("createrule", "Store", "--audience", "Beta", "--scope", SCOPE, "--from-user")
    Party.objects.filter(uri=parties.beta.uri).update(name="Alpha")
    with pytest.raises(CommandError, match="names more than one party"):
        run("createrule", "Alpha", "--audience", "Store", "--scope", SCOPE, "--from-user")
    assert not DelegationRule.objects.exists()


def test_the_running_policy_cache_sees_the_new_rule(parties: Any) -> None:
    """The rule is written through the ORM, whose writes fire the policy-version triggers: a
    process that has cached the policy reads the new rule on its next request."""
    alpha = Party.objects.get(uri=parties.alpha.uri)
    store = policy_store.current()
    assert store.cached, "the suite runs with the policy cache on"
    assert store.rules_for(alpha) == ()  # now cached: alpha has no rules
    rule_id = run(
        "createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user", "--json"
    ).json()["rule"]["id"]
    assert policy_store.current().rules_for(alpha)[0].id == rule_id


def test_a_self_registered_client_is_warned_that_its_registration_rules_govern_it(parties: Any) -> None:
    Party.objects.filter(uri=parties.alpha.uri).update(registration=Party.BY_DCR)
    result = run("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user")
    assert "registration rules govern it until an admin promotes it" in result.stderr
    assert DelegationRule.objects.count() == 1
