"""Delegation policy: who may act for whom, toward what, with which scopes.

Pure decision code with no I/O. Every answer's reason is a member of the one
catalogue, :class:`delegation_idp.core.reasons.Reason`, which also fixes the OAuth
error and the public description a refusal is answered with. The grant turns database rows into the frozen
views below and asks :func:`evaluate`; the admin's "try a delegation" page asks
the same function. Deny by default: without an enabled, matching rule the
answer is no, and every answer carries a stable machine-readable reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from delegation_idp.core.approval import ApprovalView
from delegation_idp.core.reasons import Reason

__all__ = [
    "OUTCOMES",
    "Decision",
    "ExchangeContext",
    "Explanation",
    "Limits",
    "PartyView",
    "Reason",
    "RuleOutcome",
    "RuleView",
    "binding_refusal",
    "client_resources",
    "evaluate",
    "exchange_binding",
    "explain",
    "may_exchange",
    "may_obtain_tokens",
    "resource_owner",
    "resource_under",
]


# Every reason :func:`evaluate` can answer with.
OUTCOMES = frozenset(
    {
        Reason.ALLOWED,
        Reason.ACTOR_DISABLED,
        Reason.CHAIN_ACTOR_DISABLED,
        Reason.MAY_ACT_MISMATCH,
        Reason.DEPTH_EXCEEDED,
        Reason.CYCLE,
        Reason.TARGET_UNKNOWN,
        Reason.NO_RULE,
        Reason.AUDIENCE_NOT_PERMITTED,
        Reason.UPSTREAM_NOT_PERMITTED,
        Reason.USER_NOT_PERMITTED,
        Reason.RULE_NOT_IN_EFFECT,
        Reason.RULE_DEPTH_EXCEEDED,
        Reason.SCOPE_EXCEEDS_SUBJECT,
        Reason.SCOPE_NOT_PERMITTED,
    }
)


@dataclass(frozen=True)
class PartyView:
    """A registered agent, MCP server or resource server, as policy sees it."""

    uri: str
    enabled: bool = True
    kind: str = "agent"
    #: arrived by itself (a client ID metadata document, RFC 7591) and not promoted
    self_registered: bool = False
    #: every token it requests must be DPoP-bound (RFC 9449 section 5.2's dpop_bound_access_tokens)
    dpop_required: bool = False


@dataclass(frozen=True)
class RuleView:
    """One delegation rule for one actor. Empty ``user_ids`` and ``group_ids`` mean any user."""

    id: int
    actor: str
    audiences: frozenset[str]
    max_scope: frozenset[str]
    max_depth: int | None = None
    upstream: frozenset[str] = frozenset()
    direct_from_user: bool = False
    user_ids: frozenset[Any] = frozenset()
    group_ids: frozenset[Any] = frozenset()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    enabled: bool = True
    #: precedence among the actor's rules: the lowest is tried first (ties: the lowest id)
    position: int = 0
    #: when a hop it allows needs the user's approval (None: never)
    approval: ApprovalView | None = None

    def in_effect(self, now: datetime) -> bool:
        return (
            self.enabled
            and (self.valid_from is None or self.valid_from <= now)
            and (self.valid_until is None or now < self.valid_until)
        )


@dataclass(frozen=True)
class Limits:
    max_depth: int = 5
    allow_repeated_actors: bool = False


@dataclass(frozen=True)
class ExchangeContext:
    """Everything a decision depends on.

    ``chain`` is the subject token's actor chain, nearest first; the issued
    token's chain is ``(requester.uri, *chain)`` and its depth ``len(chain) + 1``.
    ``parties`` holds every registered party the decision may need to look at
    (the requester, the chain's actors and the targets), keyed by URI.
    ``from_user`` is true only when the subject token's lineage row has a user: a
    token without a resource owner is never "directly from a user token".
    ``user_authorized`` is true when ``chain`` is the one client a user authorized, at the
    authorization endpoint, to address the requester directly (RFC 8707; the subject token
    then carries no ``act``, and that client is the chain's only actor): a rule "directly
    from a user token" covers it too, since the user authorized that hop.
    """

    requester: PartyView
    chain: tuple[str, ...]
    targets: tuple[str, ...]
    subject_scope: frozenset[str]
    requested_scope: frozenset[str] | None
    now: datetime
    parties: Mapping[str, PartyView] = field(default_factory=dict)
    user_id: Any = None
    from_user: bool = False
    group_ids: frozenset[Any] = frozenset()
    may_act: Mapping[str, Any] | None = None
    issuer: str = ""
    user_authorized: bool = False

    @property
    def depth(self) -> int:
        return len(self.chain) + 1


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    granted_scope: frozenset[str] = frozenset()
    audience: tuple[str, ...] = ()
    rule_id: int | None = None
    approval: ApprovalView | None = None  #: the user must approve the hop first: the rule's terms

    @property
    def needs_approval(self) -> bool:
        return self.approval is not None

    @property
    def error(self) -> str | None:
        """The OAuth error of a refusal (the catalogue's, :mod:`delegation_idp.core.reasons`)."""
        return None if self.allowed else self.reason.error

    @property
    def description(self) -> str:
        return self.reason.description


def _deny(reason: Reason) -> Decision:
    return Decision(allowed=False, reason=reason)


def _check_chain(ctx: ExchangeContext, limits: Limits) -> Reason | None:
    if not ctx.requester.enabled:
        return Reason.ACTOR_DISABLED
    for actor in ctx.chain:
        party = ctx.parties.get(actor)
        if party is None or not party.enabled:
            return Reason.CHAIN_ACTOR_DISABLED
    if ctx.may_act is not None:
        # RFC 8693 section 4.4: the party that may act for the subject.
        if not isinstance(ctx.may_act, Mapping) or ctx.may_act.get("sub") != ctx.requester.uri:
            return Reason.MAY_ACT_MISMATCH
        if "iss" in ctx.may_act and ctx.may_act.get("iss") != ctx.issuer:
            return Reason.MAY_ACT_MISMATCH
    if ctx.depth > limits.max_depth:
        return Reason.DEPTH_EXCEEDED
    if not limits.allow_repeated_actors and ctx.requester.uri in ctx.chain:
        return Reason.CYCLE
    for target in ctx.targets:
        party = ctx.parties.get(target)
        if party is None or not party.enabled:
            return Reason.TARGET_UNKNOWN
    return None


def _rule_mismatch(rule: RuleView, ctx: ExchangeContext) -> Reason | None:
    """The first condition of ``rule`` that ``ctx`` fails, most specific last."""
    if not rule.in_effect(ctx.now):
        return Reason.RULE_NOT_IN_EFFECT
    if not set(ctx.targets) <= rule.audiences:
        return Reason.AUDIENCE_NOT_PERMITTED
    if ctx.chain:
        upstream_ok = ctx.chain[0] in rule.upstream or (
            ctx.user_authorized and len(ctx.chain) == 1 and rule.direct_from_user and ctx.from_user
        )
    else:
        # "Directly from a user token": the subject token must have a user behind it.
        upstream_ok = rule.direct_from_user and ctx.from_user
    if not upstream_ok:
        return Reason.UPSTREAM_NOT_PERMITTED
    if (rule.user_ids or rule.group_ids) and not (
        ctx.user_id in rule.user_ids or (ctx.group_ids & rule.group_ids)
    ):
        return Reason.USER_NOT_PERMITTED
    if rule.max_depth is not None and ctx.depth > rule.max_depth:
        return Reason.RULE_DEPTH_EXCEEDED
    return None


# When no rule matches, report the failure of the rule that came closest.
_SPECIFICITY = [
    Reason.RULE_NOT_IN_EFFECT,
    Reason.AUDIENCE_NOT_PERMITTED,
    Reason.UPSTREAM_NOT_PERMITTED,
    Reason.USER_NOT_PERMITTED,
    Reason.RULE_DEPTH_EXCEEDED,
]


@dataclass(frozen=True)
class RuleOutcome:
    """How one of the requester's rules fared: ``ALLOWED`` or the condition it failed."""

    rule_id: int
    reason: Reason


@dataclass(frozen=True)
class Explanation:
    """A decision with the outcome of every rule of the requester, for the admin's try page."""

    decision: Decision
    rules: tuple[RuleOutcome, ...]


def evaluate(ctx: ExchangeContext, rules: Iterable[RuleView], limits: Limits) -> Decision:
    """Decide one exchange. Scope and audience only ever narrow."""
    return explain(ctx, rules, limits).decision


def explain(ctx: ExchangeContext, rules: Iterable[RuleView], limits: Limits) -> Explanation:
    """:func:`evaluate`, with the outcome of each of the requester's rules.

    Order matters for what a refusal reveals: everything about the target
    (unknown, disabled, not permitted) is settled before anything about scope,
    so an agent cannot tell an unknown audience from a forbidden one by
    sending a scope it does not hold.
    """
    reason = _check_chain(ctx, limits)
    if reason is None and not ctx.targets:
        reason = Reason.TARGET_UNKNOWN
    if reason is not None:
        return Explanation(_deny(reason), ())

    # Precedence: the first rule that allows decides, so the order is the admin's (position).
    own_rules = sorted((r for r in rules if r.actor == ctx.requester.uri), key=lambda r: (r.position, r.id))
    if not own_rules:
        return Explanation(_deny(Reason.NO_RULE), ())
    outcomes: list[RuleOutcome] = []
    closest: Reason | None = None
    scope_refused = False
    allowed: Decision | None = None
    for rule in own_rules:
        mismatch = _rule_mismatch(rule, ctx)
        if (
            mismatch is None
            and ctx.requested_scope is not None
            and not ctx.requested_scope <= ctx.subject_scope
        ):
            # Scope only ever narrows (RFC 8693 section 2.1): never beyond the subject token's.
            return Explanation(
                _deny(Reason.SCOPE_EXCEEDS_SUBJECT),
                (*outcomes, RuleOutcome(rule.id, Reason.SCOPE_EXCEEDS_SUBJECT)),
            )
        if mismatch is None:
            wanted = ctx.requested_scope if ctx.requested_scope is not None else ctx.subject_scope
            granted = wanted & rule.max_scope
            if (ctx.requested_scope is not None and granted != ctx.requested_scope) or not granted:
                mismatch = Reason.SCOPE_NOT_PERMITTED
                scope_refused = True
            elif allowed is None:
                approval = rule.approval
                allowed = Decision(
                    allowed=True,
                    reason=Reason.ALLOWED,
                    granted_scope=frozenset(granted),
                    audience=tuple(ctx.targets),
                    rule_id=rule.id,
                    approval=approval
                    if approval is not None and approval.needed(granted, ctx.depth)
                    else None,
                )
        elif closest is None or _SPECIFICITY.index(mismatch) > _SPECIFICITY.index(closest):
            closest = mismatch
        outcomes.append(RuleOutcome(rule.id, mismatch or Reason.ALLOWED))
    if allowed is not None:
        return Explanation(allowed, tuple(outcomes))
    if scope_refused:
        return Explanation(_deny(Reason.SCOPE_NOT_PERMITTED), tuple(outcomes))
    return Explanation(_deny(closest or Reason.NO_RULE), tuple(outcomes))


# The kinds of registered party that may exchange tokens: they pass a task on.
EXCHANGING_KINDS = frozenset({"agent", "mcp_server"})


def may_exchange(requester: PartyView | None, *, confidential: bool) -> Reason | None:
    """Whether a client may ask for a token exchange at all: a confidential client registered
    as an agent or an MCP server by an admin (``NOT_AN_AGENT`` otherwise: a client that
    registered itself reaches only what a user authorized on the consent page, until it is
    promoted), and enabled (``ACTOR_DISABLED``)."""
    if (
        requester is None
        or requester.kind not in EXCHANGING_KINDS
        or requester.self_registered
        or not confidential
    ):
        return Reason.NOT_AN_AGENT
    if not requester.enabled:
        return Reason.ACTOR_DISABLED
    return None


def may_obtain_tokens(party: PartyView | None) -> Reason | None:
    """Whether a client may obtain tokens by django-oauth-toolkit's grants: any application,
    unless it is a registered party that is disabled (``ACTOR_DISABLED``)."""
    return Reason.ACTOR_DISABLED if party is not None and not party.enabled else None


def binding_refusal(party: PartyView | None, *, bound: bool) -> Reason | None:
    """Whether a token may be issued bound or not as requested: a party marked "DPoP required"
    (RFC 9449 section 5.2's ``dpop_bound_access_tokens``) gets DPoP-bound tokens only, by every
    grant (``DPOP_REQUIRED``)."""
    return Reason.DPOP_REQUIRED if party is not None and party.dpop_required and not bound else None


def exchange_binding(*, subject_jkt: str, holder: bool, proof_jkt: str) -> Reason | None:
    """The bindings of one exchange along the chain (RFC 9449 with RFC 8693), from the subject
    token's ``cnf.jkt`` (already checked against its lineage row), whether the requester is the
    subject token's own client (its holder), and the key the requester proved (or ""):

    * a bound subject token is exchanged for a bound token only, never a bearer one
      (``DPOP_BOUND_SUBJECT``);
    * its holder proves possession of the key it is bound to (``DPOP_KEY_MISMATCH``); the
      token's audience exchanges it under its own client authentication and its own key.

    The new token is bound to ``proof_jkt``: each hop's key is its own."""
    if subject_jkt and not proof_jkt:
        return Reason.DPOP_BOUND_SUBJECT
    if subject_jkt and holder and proof_jkt != subject_jkt:
        return Reason.DPOP_KEY_MISMATCH
    return None


def client_resources(resources: Iterable[str], allowed: Iterable[str]) -> Reason | None:
    """An application that is not a registered party may address its tokens only under the
    prefixes of the parties whose client allow-list names it."""
    prefixes = tuple(allowed)
    if all(any(resource_under(r, p) for p in prefixes) for r in resources):
        return None
    return Reason.RESOURCE_NOT_ALLOWED


def resource_owner(resource: str, owners: Iterable[tuple[str, Sequence[str]]]) -> str | None:
    """The party an RFC 8707 ``resource`` belongs to: the one whose identity URI or resource
    prefix is the longest that covers it; None if none does."""
    best: tuple[int, str] | None = None
    for uri, prefixes in owners:
        for prefix in (uri, *prefixes):
            if resource_under(resource, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), uri)
    return best[1] if best else None


def resource_under(resource: str, prefix: str) -> bool:
    """RFC 8707: ``resource`` is the URL ``prefix`` itself or one below it, on a path
    segment boundary (``https://rs.example.com/api`` covers ``.../api/x``, not ``.../apix``)."""
    return resource == prefix or resource.startswith(prefix.rstrip("/") + "/")


def scope_set(scope: str | Sequence[str] | None) -> frozenset[str]:
    """A space-delimited scope string (RFC 6749 section 3.3) as a set."""
    if scope is None:
        return frozenset()
    if isinstance(scope, str):
        return frozenset(scope.split())
    return frozenset(scope)
