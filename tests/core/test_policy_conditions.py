"""Properties of ``core.policy.evaluate`` over every condition a decision depends on (hypothesis).

The drawn requests carry what tests/core/test_policy_properties.py leaves out: rules limited
to users and groups, validity windows on either side of ``now``, a ``may_act`` claim (RFC 8693
section 4.4) that names the requester or another party, with or without ``iss``, and several
targets at once. Rules are mostly written for the request at hand, so that a good share of
the decisions allow and the properties about allowed tokens are not vacuous; the others are
refusals for every reason the evaluator has.

Stated properties:

* scope and audience only ever narrow;
* a refusal never grants;
* a rule limited to users or groups never allows a user outside them;
* a rule outside its validity window never allows;
* a ``may_act`` naming another party (or another issuer) always refuses, and one naming the
  requester changes nothing;
* several targets are allowed only if one rule allows every one of them;
* an unknown audience and a forbidden one are indistinguishable, whatever the scope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from delegation_idp.core.policy import (
    Decision,
    ExchangeContext,
    Limits,
    PartyView,
    Reason,
    RuleView,
    evaluate,
)

pytestmark = pytest.mark.rfc("8693-2.1")

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ISSUER = "https://idp.example.com"
AGENTS = tuple(f"https://agent{i}.example.com" for i in range(4))
RESOURCES = tuple(f"https://rs{i}.example.com" for i in range(3))
REGISTERED = (*AGENTS, *RESOURCES)
UNREGISTERED = "https://unregistered.example.com"
PARTIES = {uri: PartyView(uri) for uri in AGENTS} | {
    uri: PartyView(uri, kind="resource_server") for uri in RESOURCES
}
USERS = (1, 2, 3)
OUTSIDER = 98  # a user no rule is drawn for
OTHER_USER = 99  # the user rules are limited to when the request's user must not pass
GROUPS = (10, 20, 30)
SCOPES = ("tasks.read", "tasks.write", "profile", "admin")
LIMITS = Limits(max_depth=4)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
# Window edges around now, the boundaries included (valid_from <= now < valid_until); most
# windows hold now, so that rules are mostly in effect.
STARTS = (None, None, None, None, NOW - HOUR, NOW - SECOND, NOW, NOW + SECOND, NOW + HOUR)
ENDS = (None, None, None, None, NOW + HOUR, NOW + SECOND, NOW, NOW - SECOND, NOW - HOUR)
EXAMPLES = settings(max_examples=200, deadline=None)

scope_sets = st.frozensets(st.sampled_from(SCOPES))


def weighted(draw: Any, *choices: tuple[int, st.SearchStrategy[Any]]) -> Any:
    """A value of one of the strategies, chosen with the given weights (shrinking to the first)."""
    pick = draw(st.integers(0, sum(weight for weight, _ in choices) - 1))
    for weight, strategy in choices:
        if pick < weight:
            return draw(strategy)
        pick -= weight
    raise AssertionError("unreachable")


@st.composite
def limited_to(draw: Any, members: tuple[Any, ...], own: Any) -> frozenset[Any]:
    """A rule's user or group list: empty (anyone) half of the time, else a list that holds
    ``own`` (the request's user or group) or does not."""
    if draw(st.booleans()):
        return frozenset()
    listed = draw(st.frozensets(st.sampled_from(members), min_size=1, max_size=2))
    if own is not None and draw(st.booleans()):
        listed |= {own}
    return listed


@st.composite
def may_acts(draw: Any, requester: str, often: bool) -> Any:
    """None, or a ``may_act`` claim naming the requester or another party, with or without
    ``iss`` (this issuer or another), or not even an object; ``often`` draws a claim most of
    the time, else now and then."""
    other = draw(st.sampled_from([p for p in REGISTERED if p != requester] + [UNREGISTERED]))
    sub = draw(st.sampled_from([requester, requester, other]))
    claim: Any = {"sub": sub}
    iss = draw(st.sampled_from([None, None, ISSUER, "https://other-idp.example.com", ""]))
    if iss is not None:
        claim["iss"] = iss
    return weighted(
        draw,
        (2 if often else 16, st.none()),
        (7 if often else 3, st.just(claim)),
        (1, st.sampled_from([requester, [requester], {}, {"iss": ISSUER}, {"sub": None}])),
    )


@st.composite
def rule_for(
    draw: Any, requester: str, chain: tuple[str, ...], targets: tuple[str, ...], ctx: dict
) -> RuleView:
    """A rule of ``requester`` written with this request in mind, each condition met most of
    the time and missed some of the time."""
    audiences = draw(st.frozensets(st.sampled_from(REGISTERED), max_size=2))
    if draw(st.integers(0, 3)):
        audiences |= set(targets)
    elif targets:
        audiences |= set(draw(st.lists(st.sampled_from(targets), max_size=len(targets) - 1)))
    upstream = draw(st.frozensets(st.sampled_from(AGENTS), max_size=1))
    if chain and draw(st.integers(0, 4)):
        upstream |= {chain[0]}
    max_scope = draw(scope_sets)
    if draw(st.integers(0, 2)):
        max_scope |= ctx["subject_scope"]
    return RuleView(
        id=0,  # numbered by the caller
        actor=requester,
        audiences=frozenset(audiences),
        max_scope=frozenset(max_scope),
        max_depth=draw(st.sampled_from([None, None, None, 1, 2, 3, 4])),
        upstream=frozenset(upstream),
        direct_from_user=draw(st.integers(0, 3)) > 0 if not chain else draw(st.booleans()),
        user_ids=draw(limited_to(USERS, ctx["user_id"])),
        group_ids=draw(limited_to(GROUPS, next(iter(ctx["group_ids"]), None))),
        valid_from=draw(st.sampled_from(STARTS)),
        valid_until=draw(st.sampled_from(ENDS)),
        enabled=draw(st.integers(0, 9)) > 0,
    )


@st.composite
def other_rule(draw: Any) -> RuleView:
    """A rule of any agent, about anything: noise the requester's decision must ignore."""
    return RuleView(
        id=0,
        actor=draw(st.sampled_from(AGENTS)),
        audiences=draw(st.frozensets(st.sampled_from((*REGISTERED, UNREGISTERED)), min_size=1)),
        max_scope=draw(scope_sets),
        upstream=draw(st.frozensets(st.sampled_from(AGENTS))),
        direct_from_user=draw(st.booleans()),
        user_ids=draw(st.frozensets(st.sampled_from(USERS))),
        group_ids=draw(st.frozensets(st.sampled_from(GROUPS))),
        valid_from=draw(st.sampled_from(STARTS)),
        valid_until=draw(st.sampled_from(ENDS)),
        enabled=draw(st.booleans()),
    )


@st.composite
def exchange_requests(
    draw: Any, min_targets: int = 1, max_targets: int = 3, may_act_often: bool = False
) -> tuple[ExchangeContext, list[RuleView]]:
    """An exchange request and the rules it is judged by."""
    requester = draw(st.sampled_from(AGENTS))
    others = [a for a in AGENTS if a != requester]
    chain = tuple(draw(st.lists(st.sampled_from(others), max_size=2, unique=True)))
    if draw(st.integers(0, 14)) == 0:
        chain = (*chain, requester)  # a cycle, now and then
    targets = tuple(
        draw(
            st.lists(
                st.sampled_from([p for p in REGISTERED if p != requester]),
                min_size=min_targets,
                max_size=max_targets,
                unique=True,
            )
        )
    )
    subject_scope = draw(st.frozensets(st.sampled_from(SCOPES), min_size=1))
    fields: dict[str, Any] = {
        "user_id": draw(st.sampled_from([*USERS, None])),
        "group_ids": draw(st.frozensets(st.sampled_from(GROUPS), max_size=2)),
        "subject_scope": subject_scope,
    }
    requested = weighted(
        draw,
        (3, st.none()),
        (3, st.frozensets(st.sampled_from(sorted(subject_scope)), min_size=1)),
        (1, scope_sets),
    )
    own = draw(
        st.lists(
            rule_for(requester, chain, targets, fields), min_size=draw(st.sampled_from([0, 1, 1])), max_size=4
        )
    )
    noise = draw(st.lists(other_rule(), max_size=2))
    rules = [*own, *noise]
    ids = draw(st.permutations(range(1, len(rules) + 1)))
    rules = [dataclasses.replace(r, id=i) for r, i in zip(rules, ids, strict=True)]
    ctx = ExchangeContext(
        requester=PARTIES[requester],
        chain=chain,
        targets=targets,
        subject_scope=subject_scope,
        requested_scope=requested,
        now=NOW,
        parties=PARTIES,
        user_id=fields["user_id"],
        from_user=fields["user_id"] is not None,
        group_ids=fields["group_ids"],
        may_act=draw(may_acts(requester, may_act_often)),
        issuer=ISSUER,
    )
    return ctx, rules


def judged(ctx: ExchangeContext, rules: list[RuleView]) -> Decision:
    decision = evaluate(ctx, rules, LIMITS)
    event("allowed" if decision.allowed else f"refused: {decision.reason.value}")
    return decision


def allowing_rule(decision: Decision, rules: list[RuleView]) -> RuleView:
    (rule,) = [r for r in rules if r.id == decision.rule_id]
    return rule


def own_rules(ctx: ExchangeContext, rules: list[RuleView]) -> list[RuleView]:
    return [r for r in rules if r.actor == ctx.requester.uri]


def replace_own(ctx: ExchangeContext, rules: list[RuleView], **changes: Any) -> list[RuleView]:
    """``rules`` with every rule of the requester changed (the others untouched)."""
    return replace_each_own(ctx, rules, lambda _rule: changes)


def replace_each_own(
    ctx: ExchangeContext, rules: list[RuleView], changes: Callable[[RuleView], dict[str, Any]]
) -> list[RuleView]:
    """``rules`` with each rule of the requester changed by ``changes(rule)``."""
    return [dataclasses.replace(r, **changes(r)) if r.actor == ctx.requester.uri else r for r in rules]


@EXAMPLES
@given(request=exchange_requests())
def test_scope_and_audience_only_ever_narrow(request):
    """Granted: within the subject token's scope, the allowing rule's and the request's (all of
    the request, when one was made); addressed to exactly the requested targets, each one among
    the rule's audiences."""
    ctx, rules = request
    decision = judged(ctx, rules)
    if not decision.allowed:
        return
    rule = allowing_rule(decision, rules)
    assert decision.granted_scope
    assert decision.granted_scope <= ctx.subject_scope
    assert decision.granted_scope <= rule.max_scope
    if ctx.requested_scope is not None:
        assert decision.granted_scope == ctx.requested_scope
    assert decision.audience == ctx.targets
    assert set(decision.audience) <= rule.audiences


@EXAMPLES
@given(request=exchange_requests())
def test_a_refusal_never_grants(request):
    """A refusal carries no scope, no audience and no rule, and an OAuth error with words."""
    ctx, rules = request
    decision = judged(ctx, rules)
    if decision.allowed:
        assert decision.reason is Reason.ALLOWED and decision.error is None
        return
    assert decision.reason is not Reason.ALLOWED
    assert decision.granted_scope == frozenset()
    assert decision.audience == ()
    assert decision.rule_id is None
    assert decision.error in {"invalid_request", "invalid_target", "invalid_scope", "unauthorized_client"}
    assert decision.description


@EXAMPLES
@given(request=exchange_requests())
def test_a_user_or_group_limited_rule_never_allows_a_user_outside_it(request):
    """The allowing rule, when limited, lists the user or one of the user's groups. And once
    every rule of the requester is limited to other users and groups, nothing is allowed: not
    for the request's user, not for a token without a user, not for a user of other groups."""
    ctx, rules = request
    decision = judged(ctx, rules)
    if decision.allowed:
        rule = allowing_rule(decision, rules)
        if rule.user_ids or rule.group_ids:
            assert ctx.user_id in rule.user_ids or ctx.group_ids & rule.group_ids
    for user_id, group_ids in ((ctx.user_id, ctx.group_ids), (None, frozenset()), (OUTSIDER, {GROUPS[0]})):
        someone = dataclasses.replace(
            ctx, user_id=user_id, group_ids=frozenset(group_ids), from_user=user_id is not None
        )
        elsewhere = replace_each_own(
            ctx,
            rules,
            lambda r, user_id=user_id, group_ids=group_ids: {
                "user_ids": (r.user_ids - {user_id}) | {OTHER_USER},
                "group_ids": r.group_ids - group_ids,
            },
        )
        assert not evaluate(someone, elsewhere, LIMITS).allowed


@EXAMPLES
@given(
    request=exchange_requests(),
    window=st.sampled_from(
        [
            {"valid_until": NOW},  # ended this instant: the window is half-open
            {"valid_until": NOW - SECOND},
            {"valid_from": NOW + SECOND},
            {"valid_from": NOW + HOUR, "valid_until": NOW + 2 * HOUR},
            {"valid_from": NOW - 2 * HOUR, "valid_until": NOW - HOUR},
        ]
    ),
)
def test_a_rule_outside_its_window_never_allows(request, window):
    """The allowing rule's window holds ``now``; and once every rule of the requester is moved
    out of its window, nothing is allowed."""
    ctx, rules = request
    decision = judged(ctx, rules)
    if decision.allowed:
        rule = allowing_rule(decision, rules)
        assert rule.enabled
        assert rule.valid_from is None or rule.valid_from <= ctx.now
        assert rule.valid_until is None or ctx.now < rule.valid_until
    window = {"valid_from": None, "valid_until": None, **window}
    assert not evaluate(ctx, replace_own(ctx, rules, **window), LIMITS).allowed


@EXAMPLES
@given(request=exchange_requests(may_act_often=True))
def test_a_may_act_naming_another_party_always_refuses(request):
    """RFC 8693 section 4.4: a ``may_act`` whose ``sub`` is not the requester, or whose ``iss``
    is not this issuer, refuses whatever the rules; one that names the requester (and this
    issuer, if any) decides nothing: the answer is the one without it."""
    ctx, rules = request
    decision = judged(ctx, rules)
    may_act = ctx.may_act
    if may_act is None:
        return
    names_requester = (
        isinstance(may_act, Mapping)
        and may_act.get("sub") == ctx.requester.uri
        and ("iss" not in may_act or may_act["iss"] == ISSUER)
    )
    if names_requester:
        event("may_act names the requester")
        assert decision == evaluate(dataclasses.replace(ctx, may_act=None), rules, LIMITS)
    else:
        event("may_act names another party")
        assert not decision.allowed
        permissive = [
            RuleView(
                id=10_000,
                actor=ctx.requester.uri,
                audiences=frozenset(ctx.targets),
                max_scope=frozenset(SCOPES),
                upstream=frozenset(ctx.chain[:1]),
                direct_from_user=True,
            )
        ]
        assert not evaluate(ctx, permissive, Limits(max_depth=10, allow_repeated_actors=True)).allowed


@EXAMPLES
@given(request=exchange_requests(min_targets=2, max_targets=3))
def test_several_targets_are_allowed_only_if_one_rule_allows_every_one(request):
    """Allowed for several targets: the allowing rule names them all, and each target alone is
    allowed too. Two rules that each allow some of the targets (and each target alone) do not
    add up to one that allows them all; nor do rules that each miss one of them."""
    ctx, rules = request
    first, second = ctx.targets[:2]
    decision = judged(ctx, rules)
    if decision.allowed:
        rule = allowing_rule(decision, rules)
        assert set(ctx.targets) <= rule.audiences
        for target in ctx.targets:
            assert evaluate(dataclasses.replace(ctx, targets=(target,)), rules, LIMITS).allowed
        halves = [
            dataclasses.replace(rule, id=1, audiences=rule.audiences - {first}),
            dataclasses.replace(rule, id=2, audiences=rule.audiences - {second}),
        ]
        for target in ctx.targets:
            assert evaluate(dataclasses.replace(ctx, targets=(target,)), halves, LIMITS).allowed
        assert not evaluate(ctx, halves, LIMITS).allowed
    # Each rule of the requester loses one of the targets: no rule names them all any more.
    own = own_rules(ctx, rules)
    missing = {r.id: ctx.targets[i % len(ctx.targets)] for i, r in enumerate(own)}
    split = replace_each_own(ctx, rules, lambda r: {"audiences": r.audiences - {missing[r.id]}})
    assert not evaluate(ctx, split, LIMITS).allowed


def unknown_and_forbidden(
    ctx: ExchangeContext,
    rules: list[RuleView],
    forbidden: str,
    position: int,
    scope_a: frozenset[str] | None,
    scope_b: frozenset[str] | None,
) -> tuple[Decision, Decision]:
    """The answers to the same request with ``forbidden`` in the targets at ``position``, and
    with an unregistered target there instead, each asking for its own scope."""
    rest = [t for t in ctx.targets if t != forbidden]
    position = min(position, len(rest))

    def answer(target: str, scope: frozenset[str] | None) -> Decision:
        targets = (*rest[:position], target, *rest[position:])
        return evaluate(dataclasses.replace(ctx, targets=targets, requested_scope=scope), rules, LIMITS)

    return answer(UNREGISTERED, scope_a), answer(forbidden, scope_b)


@EXAMPLES
@given(
    request=exchange_requests(max_targets=2),
    pick=st.integers(0, len(REGISTERED) - 2),
    position=st.integers(0, 2),
    scope_a=st.none() | scope_sets,
    scope_b=st.none() | scope_sets,
)
def test_an_unknown_audience_and_a_forbidden_one_are_indistinguishable_whatever_the_scope(
    request, pick, position, scope_a, scope_b
):
    """One request names an unregistered target, the other a registered one that no rule of
    the requester in effect permits (rules out of their window may still name it), the other
    targets and everything else alike. Whatever scope each of them asks for, the two answers
    carry the same error and the same description: a client learns nothing about which
    parties exist by sending a scope it does not hold."""
    ctx, rules = request
    forbidden = [p for p in REGISTERED if p != ctx.requester.uri][pick]
    rules = [
        dataclasses.replace(r, audiences=r.audiences - {forbidden})
        if r.actor == ctx.requester.uri and r.in_effect(ctx.now)
        else r
        for r in rules
    ]
    unknown, denied = unknown_and_forbidden(ctx, rules, forbidden, position, scope_a, scope_b)
    event(f"unknown: {unknown.reason.value}, forbidden: {denied.reason.value}")
    assert not unknown.allowed and not denied.allowed
    assert (unknown.error, unknown.description) == (denied.error, denied.description)


@EXAMPLES
@given(
    request=exchange_requests(max_targets=2),
    pick=st.integers(0, len(REGISTERED) - 2),
    position=st.integers(0, 2),
    scope_a=st.none() | scope_sets,
    scope_b=st.none() | scope_sets,
)
def test_a_target_no_rule_lets_through_reads_like_an_unknown_one_whatever_the_condition_failed(
    request, pick, position, scope_a, scope_b
):
    """The wider reading of "forbidden": a registered target that no rule of the requester lets
    it reach, whether no rule names it or the rules that name it fail on their window, their
    upstream actor, their user or group limit, or their own depth limit. Still the same error
    and description as an unregistered target, whatever scope either request asks for."""
    ctx, rules = request
    forbidden = [p for p in REGISTERED if p != ctx.requester.uri][pick]
    wide_open = dataclasses.replace(
        ctx, targets=(forbidden,), requested_scope=None, subject_scope=frozenset(SCOPES)
    )
    # Refused for the target itself, with the widest scope on offer (a rule that names the
    # target but may grant no scope at all is a scope refusal, not a forbidden target).
    refused = evaluate(wide_open, rules, LIMITS)
    assume(not refused.allowed)
    assume(refused.reason not in (Reason.SCOPE_NOT_PERMITTED, Reason.SCOPE_EXCEEDS_SUBJECT))
    unknown, denied = unknown_and_forbidden(ctx, rules, forbidden, position, scope_a, scope_b)
    event(f"forbidden by: {evaluate(wide_open, rules, LIMITS).reason.value}")
    assert not unknown.allowed and not denied.allowed
    assert (unknown.error, unknown.description) == (denied.error, denied.description)
