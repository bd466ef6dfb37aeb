"""The user in the loop on the command line (OpenID CIBA): ``createrule --approval ...`` checked
as the admin's form checks it, and ``explain`` saying "allowed after the user's approval"
(``approval_required``), as the token endpoint answers."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError

from delegation_idp.models import DelegationRule
from tests.cli.conftest import SCOPE, run

RULE = ("createrule", "Alpha", "--audience", "Beta", "--scope", SCOPE, "--from-user")


def test_createrule_with_approval_terms(parties: Any) -> None:
    data = run(
        *RULE,
        "--approval",
        "above",
        "--approval-scopes",
        "tasks.write",
        "--approval-depth",
        "1",
        "--approval-lifetime",
        "120",
        "--approval-reuse",
        "60",
        "--json",
    ).json()
    rule = DelegationRule.objects.get(pk=data["rule"]["id"])
    assert (
        rule.approval,
        rule.approval_scopes,
        rule.approval_min_depth,
        rule.approval_lifetime,
        rule.approval_reuse_seconds,
    ) == ("above", "tasks.write", 1, 120, 60)
    assert {k: v for k, v in data["rule"].items() if k.startswith("approval")} == {
        "approval": "above",
        "approval_scopes": ["tasks.write"],
        "approval_min_depth": 1,
        "approval_lifetime": 120,
        "approval_reuse_seconds": 60,
    }


def test_createrule_text_says_the_rule_needs_approval(parties: Any) -> None:
    out = run(*RULE, "--approval", "always", "--approval-reuse", "30").stdout
    assert out.rstrip().endswith("; needs the user's approval always, reused for 30 s")
    plain = run("createrule", "Beta", "--audience", "Store", "--scope", SCOPE, "--from-user").stdout
    assert "approval" not in plain


def test_createrule_defaults_to_never(parties: Any) -> None:
    run(*RULE)
    rule = DelegationRule.objects.get()
    assert (rule.approval, rule.approval_reuse_seconds, rule.approval_view()) == ("never", 0, None)


def test_different_approval_terms_are_another_rule(parties: Any) -> None:
    first = run(*RULE, "--json").json()
    again = run(*RULE, "--approval", "always", "--json").json()
    same = run(*RULE, "--approval", "always", "--json").json()
    assert again["created"] is True and again["rule"]["id"] != first["rule"]["id"]
    assert same["created"] is False and same["rule"]["id"] == again["rule"]["id"]


@pytest.mark.parametrize(
    "options,message",
    [
        (("--approval", "above"), "--approval: "),
        (("--approval", "above", "--approval-scopes", "admin"), "--approval-scopes: Not within"),
        (("--approval", "always", "--approval-lifetime", "5"), "--approval-lifetime: From 10 seconds"),
        (("--approval", "always", "--approval-lifetime", "86401"), "--approval-lifetime: "),
        (("--approval", "always", "--approval-reuse", "-1"), "--approval-reuse: "),
        (("--approval", "above", "--approval-depth", "0"), "--approval-depth: "),
    ],
)
def test_createrule_refuses_what_the_admin_refuses(
    parties: Any, options: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        run(*RULE, *options)
    assert not DelegationRule.objects.exists()


def test_createrule_refuses_an_unknown_mode(parties: Any) -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        run(*RULE, "--approval", "sometimes")


def explain(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = run("explain", *args, "--json").json()
    return result


def test_explain_says_allowed_after_the_users_approval(parties: Any) -> None:
    rule_id = run(*RULE, "--approval", "above", "--approval-scopes", "tasks.write", "--json").json()["rule"][
        "id"
    ]
    data = explain("Alpha", "--audience", "Beta", "--scope", SCOPE, "--user", "alice")
    assert data["allowed"] is True and data["needs_approval"] is True
    assert (data["reason"], data["error"]) == ("approval_required", "access_denied")
    assert "backchannel authentication request" in data["description"]
    assert data["rule_id"] == rule_id and data["issued_chain"] == [parties.alpha.uri]
    assert data["approval"] == {
        "always": False,
        "scopes": ["tasks.write"],
        "min_depth": None,
        "lifetime": 300,
        "lifetime_from_setting": True,
        "reuse_seconds": 0,
    }
    assert data["allowed_audiences"][0]["needs_approval"] is True
    # The token endpoint answers the same.
    token = parties.user_token(parties.alpha)
    refused = parties.exchange(parties.alpha, token, parties.beta.uri)
    assert refused.status_code == 400 and refused.json()["error"] == "access_denied"
    assert refused.json()["error_description"] == data["description"]

    # Without the scope that needs it: plainly allowed, at the token endpoint too.
    plain = explain("Alpha", "--audience", "Beta", "--scope", SCOPE, "--requested-scope", "tasks.read")
    assert (plain["reason"], plain["needs_approval"], plain["approval"]) == ("allowed", False, None)
    assert parties.exchange(parties.alpha, token, parties.beta.uri, scope="tasks.read").status_code == 200


def test_explain_text_output(parties: Any) -> None:
    run(*RULE, "--approval", "always", "--approval-lifetime", "60", "--approval-reuse", "120")
    out = run("explain", "Alpha", "--audience", "Beta", "--scope", SCOPE).stdout.splitlines()
    assert out[0].startswith("allowed after the user's approval by rule ")
    assert out[0].endswith("(reason code: approval_required)")
    assert out[1] == (
        "  needs the user's approval always; the request waits 60 s for the user (the rule's); "
        "an approval also answers identical requests for 120 s"
    )
    assert out[2] == "  until the user approves, the token endpoint answers access_denied:"
    assert any("granted scope: tasks.read tasks.write" in line for line in out)
    assert any(line.endswith("scope tasks.read tasks.write, after the user's approval)") for line in out)


def test_explain_of_a_refusal_never_mentions_approval(parties: Any) -> None:
    run(*RULE, "--approval", "always")
    data = explain("Alpha", "--audience", "Beta", "--scope", "tasks.read", "--requested-scope", SCOPE)
    assert data["allowed"] is False and data["needs_approval"] is False and data["approval"] is None
    assert data["reason"] == "scope_exceeds_subject"


def test_explain_at_the_authorization_endpoint_asks_no_approval(parties: Any) -> None:
    run(*RULE, "--approval", "always")
    data = explain("Alpha", "--audience", "Beta", "--scope", SCOPE, "--authorize")
    assert data["allowed"] is True and data["needs_approval"] is False and data["reason"] == "allowed"
