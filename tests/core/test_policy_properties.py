"""Properties of the evaluator over random chains and rule sets (hypothesis).

A random walk plays one task through random rules: the holder of a token asks
for a token addressed to a random party, with a random scope request. Whatever
the rules say, no token the evaluator lets through is wider than its parent,
deeper than the limits, or repeats an actor.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from delegation_idp.core.policy import ExchangeContext, Limits, PartyView, Reason, RuleView, evaluate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = tuple(f"https://a{i}.example.com" for i in range(6))
RESOURCE = "https://rs.example.com"
ALL = (*AGENTS, RESOURCE)
SCOPES = ("tasks.read", "tasks.write", "profile", "admin")

scopes = st.frozensets(st.sampled_from(SCOPES))
# Scope sets that usually overlap, so that walks get deep.
usual_scopes = st.sampled_from(
    [frozenset(SCOPES), frozenset({"tasks.read", "tasks.write"}), frozenset({"tasks.read"})]
)
rules_strategy = st.lists(
    st.builds(
        RuleView,
        id=st.integers(1, 10_000),
        actor=st.sampled_from(AGENTS),
        audiences=st.frozensets(st.sampled_from(ALL), min_size=1),
        max_scope=scopes,
        max_depth=st.none() | st.integers(1, 7),
        upstream=st.frozensets(st.sampled_from(AGENTS)),
        direct_from_user=st.booleans(),
        enabled=st.booleans(),
    ),
    max_size=25,
    unique_by=lambda r: r.id,
)
limits_strategy = st.builds(
    Limits, max_depth=st.sampled_from([1, 2, 3, 5, 5, 5, 7]), allow_repeated_actors=st.booleans()
)


def _parties(disabled: frozenset[str]) -> dict[str, PartyView]:
    return {uri: PartyView(uri, enabled=uri not in disabled) for uri in ALL}


@st.composite
def walks(draw):
    """A random task and rules biased to let much of it through.

    The path is a sequence of parties (repeats possible); each hop gets, most of
    the time, a rule written for it with random scope, depth, enabled flag and
    extra audiences and upstreams, and random unrelated rules are mixed in.
    """
    # Mostly distinct actors (a repeat is refused as a cycle, which ends the walk early).
    path = draw(st.lists(st.sampled_from(AGENTS), min_size=3, max_size=8, unique=draw(st.integers(0, 4)) > 0))
    if draw(st.booleans()):
        path.append(RESOURCE)
    rules: list[RuleView] = []
    for i, (holder, target) in enumerate(zip(path, path[1:], strict=False)):
        if draw(st.integers(0, 9)) == 0:
            continue  # this hop has no rule written for it
        upstream = draw(st.frozensets(st.sampled_from(AGENTS), max_size=2))
        rules.append(
            RuleView(
                id=len(rules) + 1,
                actor=holder,
                audiences=frozenset({target}) | draw(st.frozensets(st.sampled_from(ALL), max_size=2)),
                max_scope=draw(st.one_of(usual_scopes, usual_scopes, usual_scopes, usual_scopes, scopes)),
                max_depth=draw(st.sampled_from([None, None, None, 3, 5, 8])),
                upstream=upstream | ({path[i - 1]} if i else frozenset()),
                direct_from_user=i == 0 or draw(st.booleans()),
                enabled=draw(st.integers(0, 19)) > 0,
            )
        )
    noise = draw(rules_strategy)
    rules += [RuleView(**{**r.__dict__, "id": r.id + 1000}) for r in noise]
    user_scope = draw(st.one_of(usual_scopes, usual_scopes, usual_scopes, usual_scopes, scopes))
    requests = [
        draw(st.one_of(*[st.none()] * 6, st.just(frozenset({"tasks.read"})), scopes)) for _ in path[1:]
    ]
    return path, user_scope, requests, rules


@settings(max_examples=300, deadline=None)
@given(
    limits=limits_strategy,
    walk=walks(),
    disabled=st.just(frozenset()) | st.frozensets(st.sampled_from(ALL), max_size=1),
)
def test_issued_tokens_only_narrow_and_stay_within_limits(limits, walk, disabled):
    path, scope, requests, rules = walk
    holder, chain = path[0], ()
    parties = _parties(disabled)
    by_id = {r.id: r for r in rules}
    hops = 0
    for target, requested in zip(path[1:], requests, strict=True):
        ctx = ExchangeContext(
            requester=parties[holder],
            chain=chain,
            targets=(target,),
            subject_scope=scope,
            requested_scope=requested,
            now=NOW,
            parties=parties,
        )
        decision = evaluate(ctx, rules, limits)
        if not decision.allowed:
            assert decision.granted_scope == frozenset() and decision.error
            event(f"stopped by {decision.reason.value}")
            break
        hops += 1
        new_chain = (holder, *chain)
        rule = by_id[decision.rule_id]
        # Never wider than the parent token, the rule, or the request.
        assert decision.granted_scope and decision.granted_scope <= scope
        assert decision.granted_scope <= rule.max_scope
        assert requested is None or decision.granted_scope == requested
        # Never deeper than the global limit or the rule's own.
        assert len(new_chain) <= limits.max_depth
        assert rule.max_depth is None or len(new_chain) <= rule.max_depth
        # Never a repeated actor unless the setting allows it.
        if not limits.allow_repeated_actors:
            assert len(set(new_chain)) == len(new_chain)
        # Only the permitted audience, only for a permitted upstream, only by enabled parties.
        assert decision.audience == (target,) and target in rule.audiences
        assert (chain[0] in rule.upstream) if chain else rule.direct_from_user
        assert rule.actor == holder and rule.enabled
        assert all(parties[p].enabled for p in (*new_chain, target))
        holder, chain, scope = target, new_chain, decision.granted_scope
        if holder == RESOURCE:  # an audience only: it never exchanges
            break
    event(f"hops allowed: {min(hops, 5)}{'+' if hops >= 5 else ''}")


@settings(max_examples=300, deadline=None)
@given(
    rules=rules_strategy,
    extra=rules_strategy,
    limits=limits_strategy,
    requester=st.sampled_from(AGENTS),
    chain=st.lists(st.sampled_from(AGENTS), max_size=6).map(tuple),
    target=st.sampled_from(ALL),
    subject=scopes,
    requested=st.none() | scopes,
)
def test_more_rules_never_take_a_permission_away(
    rules, extra, limits, requester, chain, target, subject, requested
):
    """Deny by default and monotone: adding rules can only allow more."""
    ctx = ExchangeContext(
        requester=PartyView(requester),
        chain=chain,
        targets=(target,),
        subject_scope=subject,
        requested_scope=requested,
        now=NOW,
        parties=_parties(frozenset()),
    )
    ids = {r.id for r in rules}
    more = [*rules, *(r for r in extra if r.id not in ids)]
    before, after = evaluate(ctx, rules, limits), evaluate(ctx, more, limits)
    if before.allowed:
        assert after.allowed
    if not rules:
        assert before.reason in {
            Reason.NO_RULE,
            Reason.CYCLE,
            Reason.DEPTH_EXCEEDED,
            Reason.TARGET_UNKNOWN,
        }


@settings(max_examples=200, deadline=None)
@given(
    rules=rules_strategy,
    limits=limits_strategy,
    chain=st.lists(st.sampled_from(AGENTS), max_size=4).map(tuple),
)
def test_a_disabled_party_anywhere_stops_the_chain(rules, limits, chain):
    if not chain:
        return
    for disabled in {*chain, AGENTS[0]}:
        ctx = ExchangeContext(
            requester=PartyView(AGENTS[0], enabled=AGENTS[0] != disabled),
            chain=chain,
            targets=(RESOURCE,),
            subject_scope=frozenset(SCOPES),
            requested_scope=None,
            now=NOW,
            parties=_parties(frozenset({disabled})),
        )
        decision = evaluate(ctx, rules, limits)
        assert not decision.allowed
        assert decision.reason in {Reason.ACTOR_DISABLED, Reason.CHAIN_ACTOR_DISABLED}


# -- no allowing rule, no token ---------------------------------------------------------------

FUZZ_URIS = ("https://agent1.example.com", "https://agent2.example.com", "https://mcp.example.com", RESOURCE)
any_uri = st.sampled_from(FUZZ_URIS)
abc_scopes = st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=3)


@st.composite
def any_rule(draw: Any) -> RuleView:
    return RuleView(
        id=draw(st.integers(1, 50)),
        actor=draw(any_uri),
        audiences=draw(st.frozensets(any_uri, max_size=3)),
        max_scope=draw(abc_scopes),
        max_depth=draw(st.none() | st.integers(1, 5)),
        upstream=draw(st.frozensets(any_uri, max_size=2)),
        direct_from_user=draw(st.booleans()),
        enabled=draw(st.booleans()),
    )


@given(
    requester=any_uri,
    chain=st.lists(any_uri, max_size=4),
    targets=st.lists(any_uri, max_size=2),
    subject_scope=abc_scopes,
    requested=st.none() | abc_scopes,
    rule_list=st.lists(any_rule(), max_size=4),
)
def test_policy_never_allows_without_a_matching_rule(
    requester, chain, targets, subject_scope, requested, rule_list
):
    parties = {u: PartyView(uri=u) for u in FUZZ_URIS}
    ctx = ExchangeContext(
        requester=parties[requester],
        chain=tuple(chain),
        targets=tuple(dict.fromkeys(targets)),
        subject_scope=subject_scope,
        requested_scope=requested,
        now=NOW,
        parties=parties,
    )
    decision = evaluate(ctx, rule_list, Limits())
    if not decision.allowed:
        assert decision.error in {"invalid_request", "invalid_target", "invalid_scope", "unauthorized_client"}
        return
    assume(decision.rule_id is not None)
    matching = [r for r in rule_list if r.id == decision.rule_id and r.actor == requester and r.enabled]
    assert matching, "allowed without an enabled rule of the requester"
    rule = matching[0]
    assert set(ctx.targets) <= rule.audiences and ctx.targets
    assert decision.granted_scope and decision.granted_scope <= rule.max_scope & subject_scope
    assert (rule.direct_from_user and not chain) or (chain and chain[0] in rule.upstream)
    assert requester not in chain
    assert len(chain) + 1 <= 5
