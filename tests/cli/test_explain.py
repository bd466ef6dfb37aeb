"""``manage.py explain``: the admin's dry run on the command line, with the reason code the
token endpoint would record."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError
from oauth2_provider.models import get_access_token_model

from delegation_idp.models import AuditEvent, DelegationRule, Party, TokenLineage
from tests.cli.conftest import SCOPE, run


def state() -> tuple[Any, ...]:
    """Everything a dry run must leave alone."""
    return (
        list(Party.objects.values_list("pk", "enabled", "updated")),
        list(DelegationRule.objects.values_list("pk", "enabled", "updated")),
        AuditEvent.objects.count(),
        TokenLineage.objects.count(),
        get_access_token_model().objects.count(),
    )


def explain(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = run("explain", *args, "--json").json()
    return result


@pytest.fixture
def rules(parties: Any) -> dict[str, int]:
    """Alpha may hand alice's token to Beta (read only); Beta may continue Alpha's chain to Store."""
    ids = {}
    for name, args in {
        "alpha": (
            "Alpha",
            "--audience",
            "Beta",
            "--scope",
            "tasks.read",
            "--from-user",
            "--description",
            "hand over",
        ),
        "beta": ("Beta", "--audience", "Store", "--scope", SCOPE, "--upstream", "Alpha", "--user", "alice"),
    }.items():
        ids[name] = run("createrule", *args, "--json").json()["rule"]["id"]
    return ids


def test_allowed_with_the_rule_that_matched(parties: Any, rules: dict[str, int]) -> None:
    before = state()
    data = explain("Alpha", "--audience", "Beta", "--scope", SCOPE, "--user", "alice")
    assert data == {
        "allowed": True,
        "needs_approval": False,
        "reason": "allowed",
        "error": None,
        "description": "Allowed.",
        "approval": None,
        "granted_scope": "tasks.read",
        "audience": [parties.beta.uri],
        "rule_id": rules["alpha"],
        "authorize": False,
        "issued_chain": [parties.alpha.uri],
        "depth": 1,
        "max_depth": 5,
        "rules": [{"id": rules["alpha"], "description": "hand over", "reason": "allowed"}],
        "allowed_audiences": [
            {
                "audience": parties.beta.uri,
                "rule_id": rules["alpha"],
                "rule": "hand over",
                "granted_scope": "tasks.read",
                "needs_approval": False,
            }
        ],
    }
    assert state() == before, "a dry run changes nothing"


def test_text_output_prints_the_decision_and_reason_code(parties: Any, rules: dict[str, int]) -> None:
    out = run("explain", "Alpha", "--audience", "Beta", "--scope", SCOPE).stdout
    assert out.startswith(f"allowed by rule {rules['alpha']} (reason code: allowed)\n")
    assert "granted scope: tasks.read" in out
    out = run("explain", "Alpha", "--audience", "Store", "--scope", SCOPE).stdout
    assert out.startswith("refused: audience_not_permitted (the token endpoint answers invalid_target)\n")
    assert f'rule {rules["alpha"]} "hand over": audience_not_permitted' in out


def test_no_rule_says_what_to_run(parties: Any) -> None:
    data = explain("Alpha", "--audience", "Beta", "--scope", SCOPE)
    assert (data["allowed"], data["reason"], data["error"], data["rules"]) == (
        False,
        "no_rule",
        "invalid_target",
        [],
    )
    out = run("explain", "Alpha", "--audience", "Beta", "--scope", SCOPE).stdout
    assert f"add one with `manage.py createrule {parties.alpha.uri} ...`" in out


@pytest.mark.parametrize(
    "args,reason,error",
    [
        (["Beta", "--chain", "Alpha", "--audience", "Store", "--user", "alice"], "allowed", None),
        (["Beta", "--chain", "Alpha", "--audience", "Store"], "user_not_permitted", "invalid_target"),
        (["Beta", "--audience", "Store", "--user", "alice"], "upstream_not_permitted", "invalid_target"),
        (
            ["Beta", "--chain", "https://ghost.example.com", "--audience", "Store"],
            "chain_actor_disabled",
            "invalid_request",
        ),
        (["Alpha", "--chain", "Alpha", "--audience", "Beta"], "cycle", "invalid_request"),
        (
            ["Alpha", "--audience", "Beta", "--requested-scope", "tasks.write"],
            "scope_not_permitted",
            "invalid_scope",
        ),
        (
            ["Alpha", "--audience", "Beta", "--requested-scope", "admin"],
            "scope_exceeds_subject",
            "invalid_scope",
        ),
        (
            ["Alpha", "--audience", "Beta", "--may-act", '{"sub": "https://beta.example.com"}'],
            "may_act_mismatch",
            "invalid_request",
        ),
    ],
)
def test_reasons(
    parties: Any, rules: dict[str, int], args: list[str], reason: str, error: str | None
) -> None:
    data = explain(*args, "--scope", SCOPE)
    assert (data["reason"], data["error"]) == (reason, error)


def test_a_disabled_agent_is_refused_before_any_rule(parties: Any, rules: dict[str, int]) -> None:
    Party.objects.filter(uri=parties.alpha.uri).update(enabled=False)
    data = explain("Alpha", "--audience", "Beta", "--scope", SCOPE)
    assert (data["reason"], data["error"]) == ("actor_disabled", "unauthorized_client")


def test_it_answers_what_the_token_endpoint_answers(parties: Any, rules: dict[str, int]) -> None:
    """The same stored policy, the same evaluator: the dry run's reason is the audit record's."""
    token = parties.user_token(parties.alpha)
    cases = [
        (parties.beta.uri, ""),
        (parties.store.uri, ""),
        (parties.beta.uri, "tasks.write"),
        (parties.beta.uri, "x"),
    ]
    for audience, scope in cases:
        parties.exchange(parties.alpha, token, audience, **({"scope": scope} if scope else {}))
        recorded = AuditEvent.objects.order_by("-id").first()
        assert recorded is not None
        extra = ["--requested-scope", scope] if scope else []
        data = explain("Alpha", "--audience", audience, "--scope", SCOPE, "--user", "alice", *extra)
        assert data["reason"] == recorded.reason, (audience, scope)


def test_the_authorization_endpoints_question(parties: Any) -> None:
    """--authorize: may alice authorize Alpha for Store's resource (RFC 8707)? A rule directly
    from a user token naming Store says yes."""
    data = explain("Alpha", "--audience", "Store", "--scope", "tasks.read", "--user", "alice", "--authorize")
    assert (data["authorize"], data["reason"], data["issued_chain"]) == (True, "no_rule", [])
    run("createrule", "Alpha", "--audience", "Store", "--scope", "tasks.read", "--from-user")
    data = explain("Alpha", "--audience", "Store", "--scope", "tasks.read", "--user", "alice", "--authorize")
    assert (data["allowed"], data["granted_scope"]) == (True, "tasks.read")
    with pytest.raises(CommandError, match="--chain: At the authorization endpoint there is no chain"):
        run("explain", "Alpha", "--audience", "Store", "--scope", "x", "--chain", "Beta", "--authorize")


@pytest.mark.parametrize(
    "args,message",
    [
        (["Alpha", "--audience", "Beta", "--scope", SCOPE, "--user", "mallory"], "--user: No such user"),
        (
            ["Alpha", "--audience", "Beta", "--scope", SCOPE, "--may-act", "{"],
            "--may-act: Enter a valid JSON",
        ),
        (["Alpha", "--audience", "Beta", "--scope", 'a"b'], "--scope: Scopes are space-separated"),
        (["Alpha", "--audience", "Nobody", "--scope", SCOPE], "No registered party is named 'Nobody'"),
        (
            ["Alpha", "--audience", "Beta", "--scope", SCOPE, "--chain", "Nobody"],
            "No registered party is named 'Nobody'",
        ),
        (["Store", "--audience", "Beta", "--scope", SCOPE], "only an agent or an MCP server acts"),
    ],
)
def test_bad_input_is_a_command_error(parties: Any, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("explain", *args)


def test_a_refusal_names_the_audiences_the_rules_allow(parties: Any, rules: dict[str, int]) -> None:
    """Alpha asks for Store, which its rules do not name: refused, no issued chain, and the
    audiences its rules would allow for the same chain, user and scope (Beta) are listed."""
    data = explain("Alpha", "--audience", "Store", "--scope", SCOPE, "--user", "alice")
    assert (data["allowed"], data["reason"], data["issued_chain"]) == (False, "audience_not_permitted", [])
    assert [a["audience"] for a in data["allowed_audiences"]] == [parties.beta.uri]
    assert data["allowed_audiences"][0]["rule_id"] == rules["alpha"]
    out = run("explain", "Alpha", "--audience", "Store", "--scope", SCOPE).stdout
    assert "issued chain" not in out
    assert "audiences the rules would allow for this chain, user and scope:" in out
    assert f"    {parties.beta.uri} (rule {rules['alpha']}, scope tasks.read)" in out
    # Beta continuing Alpha's chain without alice: its one rule is for alice only.
    out = run("explain", "Beta", "--chain", "Alpha", "--audience", "Store", "--scope", SCOPE).stdout
    assert "audiences the rules would allow for this chain, user and scope: none" in out
