"""The pure evaluator (delegation_idp.core.policy): every rule and every reason code, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from delegation_idp.core.policy import (
    OUTCOMES,
    ExchangeContext,
    Limits,
    PartyView,
    Reason,
    RuleView,
    evaluate,
    explain,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ISS = "https://idp.example.com"
A1, A2, A3, RS = (f"https://{n}.example.com" for n in ("a1", "a2", "a3", "rs"))
SCOPE = frozenset({"tasks.read", "tasks.write"})
PARTIES = {u: PartyView(u) for u in (A1, A2, A3)} | {RS: PartyView(RS, kind="resource_server")}


def ctx(requester: str = A2, chain: tuple[str, ...] = (A1,), targets: tuple[str, ...] = (A3,), **kw):
    values = {
        "requester": requester if isinstance(requester, PartyView) else PARTIES[requester],
        "chain": chain,
        "targets": targets,
        "subject_scope": SCOPE,
        "requested_scope": None,
        "now": NOW,
        "parties": PARTIES,
        "user_id": 7,
        "from_user": True,
        "group_ids": frozenset({3}),
        "issuer": ISS,
    }
    values.update(kw)
    return ExchangeContext(**values)


def rule(id: int = 1, actor: str = A2, audiences=(A3,), scope=SCOPE, **kw) -> RuleView:
    kw.setdefault("upstream", frozenset({A1}))
    return RuleView(id=id, actor=actor, audiences=frozenset(audiences), max_scope=frozenset(scope), **kw)


LIMITS = Limits(max_depth=5)


def test_allowed_with_matching_rule():
    decision = evaluate(ctx(), [rule()], LIMITS)
    assert decision.allowed and decision.reason is Reason.ALLOWED
    assert decision.granted_scope == SCOPE and decision.audience == (A3,) and decision.rule_id == 1
    assert decision.error is None


def test_deny_by_default_without_any_rule():
    assert evaluate(ctx(), [], LIMITS).reason is Reason.NO_RULE


def test_other_actors_rules_do_not_count():
    assert evaluate(ctx(), [rule(actor=A1)], LIMITS).reason is Reason.NO_RULE


# (id, context changes, rules, limits, expected reason)
REFUSALS = [
    ("actor_disabled", {"requester": PartyView(A2, enabled=False)}, [rule()], LIMITS, Reason.ACTOR_DISABLED),
    (
        "chain_actor_disabled",
        {"parties": {**PARTIES, A1: PartyView(A1, enabled=False)}},
        [rule()],
        LIMITS,
        Reason.CHAIN_ACTOR_DISABLED,
    ),
    (
        "chain_actor_unregistered",
        {"chain": ("https://ghost.example.com",)},
        [rule(upstream=frozenset({"https://ghost.example.com"}))],
        LIMITS,
        Reason.CHAIN_ACTOR_DISABLED,
    ),
    ("may_act_other_sub", {"may_act": {"sub": A3}}, [rule()], LIMITS, Reason.MAY_ACT_MISMATCH),
    (
        "may_act_other_iss",
        {"may_act": {"sub": A2, "iss": "https://evil"}},
        [rule()],
        LIMITS,
        Reason.MAY_ACT_MISMATCH,
    ),
    ("may_act_not_object", {"may_act": "https://a2.example.com"}, [rule()], LIMITS, Reason.MAY_ACT_MISMATCH),
    (
        "global_depth",
        {"chain": (A1, A3)},
        [rule()],
        Limits(max_depth=2),
        Reason.DEPTH_EXCEEDED,
    ),
    ("rule_depth", {}, [rule(max_depth=1)], LIMITS, Reason.RULE_DEPTH_EXCEEDED),
    ("cycle", {"chain": (A1, A2)}, [rule()], LIMITS, Reason.CYCLE),
    ("target_unknown", {"targets": ("https://nobody.example.com",)}, [rule()], LIMITS, Reason.TARGET_UNKNOWN),
    (
        "target_disabled",
        {"parties": {**PARTIES, A3: PartyView(A3, enabled=False)}},
        [rule()],
        LIMITS,
        Reason.TARGET_UNKNOWN,
    ),
    ("no_target", {"targets": ()}, [rule()], LIMITS, Reason.TARGET_UNKNOWN),
    ("no_rule", {}, [], LIMITS, Reason.NO_RULE),
    ("audience_not_permitted", {"targets": (RS,)}, [rule()], LIMITS, Reason.AUDIENCE_NOT_PERMITTED),
    ("one_of_two_audiences", {"targets": (A3, RS)}, [rule()], LIMITS, Reason.AUDIENCE_NOT_PERMITTED),
    ("upstream_not_permitted", {"chain": (A3,)}, [rule()], LIMITS, Reason.UPSTREAM_NOT_PERMITTED),
    ("not_direct_from_user", {"chain": ()}, [rule()], LIMITS, Reason.UPSTREAM_NOT_PERMITTED),
    ("user_not_listed", {}, [rule(user_ids=frozenset({8}))], LIMITS, Reason.USER_NOT_PERMITTED),
    ("group_not_listed", {}, [rule(group_ids=frozenset({4}))], LIMITS, Reason.USER_NOT_PERMITTED),
    ("rule_disabled", {}, [rule(enabled=False)], LIMITS, Reason.RULE_NOT_IN_EFFECT),
    ("rule_not_yet", {}, [rule(valid_from=NOW + timedelta(seconds=1))], LIMITS, Reason.RULE_NOT_IN_EFFECT),
    ("rule_expired", {}, [rule(valid_until=NOW)], LIMITS, Reason.RULE_NOT_IN_EFFECT),
    (
        "scope_exceeds_subject",
        {"requested_scope": frozenset({"tasks.read", "admin"})},
        [rule()],
        LIMITS,
        Reason.SCOPE_EXCEEDS_SUBJECT,
    ),
    (
        "scope_not_permitted",
        {"requested_scope": frozenset({"tasks.write"})},
        [rule(scope={"tasks.read"})],
        LIMITS,
        Reason.SCOPE_NOT_PERMITTED,
    ),
    ("rule_scope_disjoint", {}, [rule(scope={"profile"})], LIMITS, Reason.SCOPE_NOT_PERMITTED),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusal_reason(case):
    _id, changes, rules, limits, expected = case
    decision = evaluate(ctx(**changes), rules, limits)
    assert not decision.allowed
    assert decision.reason is expected
    assert decision.granted_scope == frozenset() and decision.audience == ()
    assert decision.error == expected.error
    assert decision.description == expected.description


def test_every_reason_code_is_covered_and_mapped():
    covered = {case[4] for case in REFUSALS}
    assert covered | {Reason.ALLOWED} == OUTCOMES
    assert all(reason.description for reason in OUTCOMES)
    assert {reason.error for reason in OUTCOMES - {Reason.ALLOWED}} <= {
        "invalid_request",
        "invalid_target",
        "invalid_scope",
        "unauthorized_client",
    }


def test_audited_reason_codes_are_stable_strings():
    """The codes the audit trail and the ``exchange_denied`` signal carry do not change."""
    for code in (
        "no_rule",
        "depth_exceeded",
        "cycle",
        "scope_not_permitted",
        "actor_disabled",
        "may_act_mismatch",
    ):
        assert Reason(code).value == code


def test_descriptions_never_name_a_party():
    for text in (reason.description for reason in Reason):
        assert "http" not in text and "example" not in text


def test_unknown_and_forbidden_audience_look_the_same():
    unknown = evaluate(ctx(targets=("https://nobody.example.com",)), [rule()], LIMITS)
    forbidden = evaluate(ctx(targets=(RS,)), [rule()], LIMITS)
    assert (unknown.error, unknown.description) == (forbidden.error, forbidden.description)


def test_scope_is_judged_only_after_the_target():
    """Sending a scope beyond the subject's must not tell a forbidden audience from an unknown one."""
    wide = frozenset({"tasks.read", "admin"})
    unknown = evaluate(ctx(targets=("https://nobody.example.com",), requested_scope=wide), [rule()], LIMITS)
    forbidden = evaluate(ctx(targets=(RS,), requested_scope=wide), [rule()], LIMITS)
    no_rule = evaluate(ctx(requested_scope=wide), [], LIMITS)
    assert unknown.error == forbidden.error == no_rule.error == "invalid_target"


def test_empty_user_and_group_lists_mean_any_user():
    assert evaluate(ctx(user_id=None, group_ids=frozenset()), [rule()], LIMITS).allowed


@pytest.mark.parametrize("field,value", [("user_ids", frozenset({7})), ("group_ids", frozenset({3, 9}))])
def test_listed_user_or_group_is_permitted(field, value):
    assert evaluate(ctx(), [rule(**{field: value})], LIMITS).allowed


def test_direct_from_user_rule():
    decision = evaluate(
        ctx(requester=A1, chain=(), targets=(A2,)),
        [rule(actor=A1, audiences=(A2,), upstream=frozenset(), direct_from_user=True)],
        LIMITS,
    )
    assert decision.allowed


def test_direct_from_user_rule_needs_a_user_behind_the_token():
    """A token without a resource owner (a client's own) is never "directly from a user"."""
    decision = evaluate(
        ctx(requester=A1, chain=(), targets=(A2,), user_id=None, from_user=False),
        [rule(actor=A1, audiences=(A2,), upstream=frozenset(), direct_from_user=True)],
        LIMITS,
    )
    assert not decision.allowed and decision.reason is Reason.UPSTREAM_NOT_PERMITTED


def test_validity_window_is_half_open():
    assert evaluate(ctx(), [rule(valid_from=NOW, valid_until=NOW + timedelta(seconds=1))], LIMITS).allowed


@pytest.mark.parametrize("depth_limit,allowed", [(2, True), (1, False)])
def test_rule_depth_is_the_issued_tokens_depth(depth_limit, allowed):
    # chain (A1,) -> issued chain (A2, A1): depth 2
    assert evaluate(ctx(), [rule(max_depth=depth_limit)], LIMITS).allowed is allowed


@pytest.mark.parametrize("limit,allowed", [(2, True), (1, False)])
def test_global_depth(limit, allowed):
    assert evaluate(ctx(), [rule()], Limits(max_depth=limit)).allowed is allowed


def test_repeated_actor_allowed_only_by_setting():
    repeated = ctx(chain=(A1, A2, A1))
    rules = [rule()]
    assert evaluate(repeated, rules, LIMITS).reason is Reason.CYCLE
    assert evaluate(repeated, rules, Limits(allow_repeated_actors=True)).allowed


def test_may_act_matching_requester_and_issuer_is_honoured():
    assert evaluate(ctx(may_act={"sub": A2}), [rule()], LIMITS).allowed
    assert evaluate(ctx(may_act={"sub": A2, "iss": ISS}), [rule()], LIMITS).allowed


def test_scope_narrows_to_rule_and_request():
    decision = evaluate(ctx(), [rule(scope={"tasks.read", "profile"})], LIMITS)
    assert decision.granted_scope == {"tasks.read"}
    requested = evaluate(ctx(requested_scope=frozenset({"tasks.write"})), [rule()], LIMITS)
    assert requested.granted_scope == {"tasks.write"}


def test_first_matching_rule_by_id_wins_and_later_rules_can_widen_nothing():
    narrow, wide = rule(id=1, scope={"tasks.read"}), rule(id=2)
    decision = evaluate(ctx(), [wide, narrow], LIMITS)
    assert decision.rule_id == 1 and decision.granted_scope == {"tasks.read"}


def test_a_second_rule_can_allow_what_the_first_refuses():
    decision = evaluate(
        ctx(requested_scope=frozenset({"tasks.write"})),
        [rule(id=1, scope={"tasks.read"}), rule(id=2)],
        LIMITS,
    )
    assert decision.allowed and decision.rule_id == 2


def test_closest_rule_reason_is_reported():
    rules = [rule(id=1, audiences=(RS,)), rule(id=2, upstream=frozenset({A3}))]
    assert evaluate(ctx(), rules, LIMITS).reason is Reason.UPSTREAM_NOT_PERMITTED


def test_explain_lists_every_rule_outcome():
    rules = [
        rule(id=1, enabled=False),
        rule(id=2, audiences=(RS,)),
        rule(id=3, scope={"profile"}),
        rule(id=4),
    ]
    result = explain(ctx(), rules, LIMITS)
    assert result.decision.allowed and result.decision.rule_id == 4
    assert [(o.rule_id, o.reason) for o in result.rules] == [
        (1, Reason.RULE_NOT_IN_EFFECT),
        (2, Reason.AUDIENCE_NOT_PERMITTED),
        (3, Reason.SCOPE_NOT_PERMITTED),
        (4, Reason.ALLOWED),
    ]
    assert evaluate(ctx(), rules, LIMITS) == result.decision


def test_evaluator_does_not_mutate_inputs():
    c, rules = ctx(), [rule()]
    before = (dataclasses.asdict(c), [dataclasses.asdict(r) for r in rules])
    evaluate(c, rules, LIMITS)
    assert before == (dataclasses.asdict(c), [dataclasses.asdict(r) for r in rules])
