"""When a delegation needs its user's approval, as pure policy (OpenID CIBA): the allowing
rule's :class:`ApprovalView` decides, and it never changes what is allowed or refused, nor the
scope and audience of an allowed answer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_idp.core.approval import ApprovalView, request_fingerprint
from delegation_idp.core.policy import (
    Decision,
    ExchangeContext,
    Limits,
    PartyView,
    Reason,
    RuleView,
    evaluate,
    explain,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
A1, A2, A3 = (f"https://a{i}.example.com" for i in (1, 2, 3))
RS = "https://rs.example.com"
PARTIES = {uri: PartyView(uri) for uri in (A1, A2, A3, RS)}
SCOPE = frozenset({"tasks.read", "tasks.write"})


def ctx(requester: str = A1, chain: tuple[str, ...] = (), **fields) -> ExchangeContext:
    values = {
        "requester": PARTIES[requester],
        "chain": chain,
        "targets": (RS,),
        "subject_scope": SCOPE,
        "requested_scope": None,
        "now": NOW,
        "parties": PARTIES,
        "from_user": True,
        **fields,
    }
    return ExchangeContext(**values)


def rule(id: int = 1, approval: ApprovalView | None = None, **fields) -> RuleView:
    values = {
        "id": id,
        "actor": A1,
        "audiences": frozenset({RS}),
        "max_scope": SCOPE,
        "direct_from_user": True,
        "approval": approval,
        **fields,
    }
    return RuleView(**values)


# -- ApprovalView.needed ------------------------------------------------------------------------


def test_always_is_needed_for_every_hop():
    view = ApprovalView(always=True)
    assert all(view.needed(frozenset(s), d) for s in ({"x"}, set()) for d in (1, 5))


@pytest.mark.parametrize(
    "granted,needed",
    [({"tasks.read"}, False), ({"tasks.write"}, True), ({"tasks.read", "payments"}, True), (set(), False)],
)
def test_scopes_need_approval_when_the_grant_holds_one_of_them(granted, needed):
    view = ApprovalView(scopes=frozenset({"tasks.write", "payments"}))
    assert view.needed(frozenset(granted), 1) is needed


@pytest.mark.parametrize("depth,needed", [(1, False), (2, True), (7, True)])
def test_from_a_depth_on(depth, needed):
    assert ApprovalView(min_depth=2).needed(frozenset({"tasks.read"}), depth) is needed


def test_scopes_or_depth_either_is_enough():
    view = ApprovalView(scopes=frozenset({"tasks.write"}), min_depth=3)
    assert view.needed(frozenset({"tasks.write"}), 1)
    assert view.needed(frozenset({"tasks.read"}), 3)
    assert not view.needed(frozenset({"tasks.read"}), 2)


def test_an_empty_view_is_never_needed():
    assert not ApprovalView().needed(frozenset({"tasks.write"}), 9)


# -- the policy's decision ------------------------------------------------------------------------


def test_the_decision_carries_the_allowing_rules_terms():
    terms = ApprovalView(always=True, lifetime=60, reuse_seconds=30)
    decision = evaluate(ctx(), [rule(approval=terms)], Limits())
    assert decision.allowed and decision.reason is Reason.ALLOWED
    assert decision.needs_approval and decision.approval == terms
    assert decision.error is None  # the policy allows: the exchange's step says approval_required


def test_a_grant_without_the_sensitive_scope_needs_none():
    terms = ApprovalView(scopes=frozenset({"tasks.write"}))
    asked_read = evaluate(ctx(requested_scope=frozenset({"tasks.read"})), [rule(approval=terms)], Limits())
    assert asked_read.allowed and not asked_read.needs_approval and asked_read.approval is None
    whole = evaluate(ctx(), [rule(approval=terms)], Limits())
    assert whole.needs_approval  # the subject's whole scope, tasks.write with it


def test_the_scope_is_the_granted_one_not_the_requested_or_the_rules():
    """The rule grants only tasks.read; its approval scope tasks.write is never granted."""
    terms = ApprovalView(scopes=frozenset({"tasks.write"}))
    decision = evaluate(ctx(), [rule(approval=terms, max_scope=frozenset({"tasks.read"}))], Limits())
    assert decision.allowed and decision.granted_scope == {"tasks.read"} and not decision.needs_approval


def test_the_depth_is_the_issued_tokens():
    terms = ApprovalView(min_depth=2)
    first = evaluate(ctx(), [rule(approval=terms)], Limits())
    second = evaluate(
        ctx(requester=A2, chain=(A1,)),
        [rule(actor=A2, upstream=frozenset({A1}), direct_from_user=False, approval=terms)],
        Limits(),
    )
    assert not first.needs_approval and second.needs_approval


def test_the_first_allowing_rule_decides_its_terms_too():
    strict = ApprovalView(always=True, lifetime=30)
    lax = ApprovalView(always=True, lifetime=900, reuse_seconds=3600)
    rules = [rule(2, approval=None, position=2), rule(1, approval=strict, position=1)]
    assert evaluate(ctx(), rules, Limits()).approval == strict
    rules = [rule(1, approval=strict, position=2), rule(2, approval=lax, position=1)]
    decision = evaluate(ctx(), rules, Limits())
    assert decision.rule_id == 2 and decision.approval == lax
    # A first rule that needs none wins over a later one that does.
    rules = [rule(1, approval=None, position=1), rule(2, approval=strict, position=2)]
    decision = evaluate(ctx(), rules, Limits())
    assert decision.rule_id == 1 and not decision.needs_approval


def test_an_earlier_rule_that_does_not_match_lends_no_terms():
    strict = ApprovalView(always=True)
    rules = [
        rule(1, approval=strict, position=1, audiences=frozenset({A3})),  # another audience
        rule(2, approval=None, position=2),
    ]
    explanation = explain(ctx(), rules, Limits())
    assert explanation.decision.rule_id == 2 and not explanation.decision.needs_approval
    assert [o.reason for o in explanation.rules] == [Reason.AUDIENCE_NOT_PERMITTED, Reason.ALLOWED]


@pytest.mark.parametrize(
    "context,rules,reason",
    [
        (ctx(requested_scope=frozenset({"admin"})), [rule()], Reason.SCOPE_EXCEEDS_SUBJECT),
        (ctx(targets=(A3,)), [rule()], Reason.AUDIENCE_NOT_PERMITTED),
        (ctx(from_user=False), [rule()], Reason.UPSTREAM_NOT_PERMITTED),
        (ctx(), [rule(enabled=False)], Reason.RULE_NOT_IN_EFFECT),
        (ctx(), [], Reason.NO_RULE),
        (ctx(requester=A2), [rule()], Reason.NO_RULE),
    ],
)
def test_a_refusal_never_carries_approval(context, rules, reason):
    always = ApprovalView(always=True)
    rules = [replace(r, approval=always) for r in rules]
    decision = evaluate(context, rules, Limits())
    assert not decision.allowed and decision.reason is reason
    assert decision.approval is None and not decision.needs_approval


def test_a_decision_without_terms_needs_nothing():
    assert not Decision(allowed=True, reason=Reason.ALLOWED).needs_approval


# -- properties ------------------------------------------------------------------------------------

SCOPES = ("tasks.read", "tasks.write", "profile", "payments")
AGENTS = (A1, A2, A3)
scopes = st.frozensets(st.sampled_from(SCOPES))
views = st.none() | st.builds(
    ApprovalView,
    always=st.booleans(),
    scopes=scopes,
    min_depth=st.none() | st.integers(1, 6),
    lifetime=st.none() | st.integers(10, 86400),
    reuse_seconds=st.integers(0, 3600),
)
rule_sets = st.lists(
    st.builds(
        RuleView,
        id=st.integers(1, 1000),
        actor=st.sampled_from(AGENTS),
        audiences=st.frozensets(st.sampled_from((*AGENTS, RS)), min_size=1),
        max_scope=scopes,
        max_depth=st.none() | st.integers(1, 5),
        upstream=st.frozensets(st.sampled_from(AGENTS)),
        direct_from_user=st.booleans(),
        enabled=st.booleans(),
        position=st.integers(0, 5),
        approval=views,
    ),
    max_size=8,
    unique_by=lambda r: r.id,
)
contexts = st.builds(
    ExchangeContext,
    requester=st.sampled_from([PARTIES[a] for a in AGENTS]),
    chain=st.lists(st.sampled_from(AGENTS), max_size=3, unique=True).map(tuple),
    targets=st.lists(st.sampled_from((*AGENTS, RS)), min_size=1, max_size=2, unique=True).map(tuple),
    subject_scope=scopes,
    requested_scope=st.none() | scopes,
    now=st.just(NOW),
    parties=st.just(PARTIES),
    from_user=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(context=contexts, rules=rule_sets)
def test_approval_never_changes_what_is_decided(context, rules):
    """The same decision, rule and scope with the approval terms removed: needing approval
    never turns a refusal into an allowance nor the reverse, nor widens or narrows a grant."""
    limits = Limits()
    with_terms = explain(context, rules, limits)
    without = explain(context, [replace(r, approval=None) for r in rules], limits)
    assert replace(with_terms.decision, approval=None) == without.decision
    assert with_terms.rules == without.rules
    decision = with_terms.decision
    if not decision.allowed:
        assert decision.approval is None
    elif decision.needs_approval:
        allowing = next(r for r in rules if r.id == decision.rule_id)
        assert decision.approval == allowing.approval
        assert allowing.approval is not None
        assert allowing.approval.needed(decision.granted_scope, context.depth)


# -- the fingerprint of "identical" requests, for the reuse of an approval --------------------------


def fingerprint(**changes) -> str:
    values = {
        "user": 7,
        "chain": [A1],
        "audience": [RS, A3],
        "resources": [],
        "scope": "tasks.read tasks.write",
        "authorization_details": [{"type": "payment", "amount": "10", "currency": "EUR"}],
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        **changes,
    }
    return request_fingerprint(**values)


def test_identical_requests_share_a_fingerprint_whatever_the_order():
    assert fingerprint() == fingerprint(
        audience=[A3, RS],
        scope="tasks.write  tasks.read",
        authorization_details=[{"currency": "EUR", "amount": "10", "type": "payment"}],
    )


@pytest.mark.parametrize(
    "change",
    [
        {"user": 8},
        {"chain": [A2]},
        {"chain": [A1, A2]},
        {"audience": [RS]},
        {"resources": [f"{RS}/api"]},
        {"scope": "tasks.read"},
        {"authorization_details": [{"type": "payment", "amount": "11", "currency": "EUR"}]},
        {"authorization_details": []},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:id-jag"},
    ],
)
def test_any_difference_is_another_request(change):
    assert fingerprint(**change) != fingerprint()


def test_the_chain_order_matters():
    assert fingerprint(chain=[A1, A2]) != fingerprint(chain=[A2, A1])
