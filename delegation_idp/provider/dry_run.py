"""A dry run of the delegation policy: what the token endpoint would answer, and why.

The admin's *Try a delegation* page and ``manage.py explain`` ask :func:`try_delegation`,
which loads the stored policy exactly as a real request does
(:func:`delegation_idp.provider.policy_store.load`, or
:func:`delegation_idp.provider.resources.explain_direct` for the authorization endpoint) and
asks the same pure functions in the same order as the token-exchange grant: may this client
exchange at all (:func:`delegation_idp.core.policy.may_exchange`), then the policy
(:func:`delegation_idp.core.policy.explain`), then the kind of token for the targets
(:func:`delegation_idp.idjag.target_refusal`: an ID-JAG for one external authorization
server, an access token for any other party). It reads only: nothing is issued, recorded or
changed.

When the rule that allows needs the user's approval (OpenID CIBA), the answer is "allowed after
the user's approval": the token endpoint refuses the exchange with ``approval_required`` until
the agent asks at the backchannel authentication endpoint and the user approves
(:attr:`DryRun.approval`, with the rule's terms: how long the request waits, how long an
approval answers identical requests). The authorization endpoint asks no approval: the user
authorizes there in person.

It also says which audiences the agent's rules would allow for the same chain, user and
scope (:attr:`DryRun.allowed`): each audience any of its rules names, asked alone of the same
functions (:func:`~delegation_idp.core.policy.explain`, then the kind of token), so a refusal
for an audience the rules do not name can say which ones they do.

:func:`try_redemption` is the dry run of leg 2 of an ID-JAG: the ``jwt-bearer`` grant
(RFC 7523) redeeming, for a local client, an ID-JAG of a trusted issuer whose claims an admin
types. It asks the functions :func:`delegation_idp.rfc7523.redeem.verify` asks, in the same
order (:mod:`delegation_idp.rfc7523.decisions`), on the request as
:func:`delegation_idp.rfc7523.request.parse` reads it. What needs a real assertion is not
part of it: the client's authentication, the header, the signature, ``iss``, ``exp``,
``iat``, ``nbf``, the ``act`` chain and the ``jti``'s first use. The local user is looked up,
never created: a just-in-time user is only said to be one that would be created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.approval import ApprovalView
from delegation_idp.core.errors import OAuthError
from delegation_idp.core.reasons import Reason
from delegation_idp.idjag import assertion_refusal, target_refusal
from delegation_idp.models import Party, TrustedIssuer
from delegation_idp.provider import policy_store, resources
from delegation_idp.provider.policy_store import load
from delegation_idp.rfc7523 import decisions
from delegation_idp.rfc7523.request import parse

__all__ = [
    "AllowedAudience",
    "DryRun",
    "RedemptionDryRun",
    "approval_summary",
    "try_delegation",
    "try_redemption",
]

#: The ``jti`` and DPoP key of a dry run's made-up request: never spent, never bound to.
DRY_RUN = "dry-run"


@dataclass(frozen=True)
class AllowedAudience:
    """An audience the agent's rules would allow for the chain, user and scope tried."""

    uri: str
    #: the rule that would allow it (the first that matches, as for a real request)
    rule_id: int | None
    granted_scope: frozenset[str]
    #: the terms of the user's approval it would wait for (None: none needed)
    approval: ApprovalView | None = None


@dataclass(frozen=True)
class DryRun:
    """The decision with every rule's outcome, and what it was decided on."""

    explanation: policy.Explanation
    context: policy.ExchangeContext
    limits: policy.Limits
    #: the issued token's actor chain, nearest first (empty at the authorization endpoint, and
    #: when the request is refused: no token is issued; the chain tried is ``context.chain``)
    issued_chain: tuple[str, ...]
    authorize: bool
    #: the audiences the agent's rules would allow, each asked alone, in URI order
    allowed: tuple[AllowedAudience, ...] = ()

    @property
    def decision(self) -> policy.Decision:
        return self.explanation.decision

    @property
    def approval(self) -> ApprovalView | None:
        """The allowing rule's terms when the allowed answer waits for the user's approval: the
        token endpoint then answers ``approval_required``. None when no approval is needed, and
        at the authorization endpoint (the user is there)."""
        decision = self.decision
        return decision.approval if decision.allowed and not self.authorize else None

    @property
    def reason(self) -> Reason:
        """The reason code the token endpoint would answer with (``approval_required`` for an
        allowed hop that needs approval and does not have it yet)."""
        return Reason.APPROVAL_REQUIRED if self.approval is not None else self.decision.reason


def approval_summary(view: ApprovalView | None) -> dict[str, Any] | None:
    """A rule's approval terms in plain values (None: no approval needed): always, or the
    scopes and depth that need it; the request's lifetime (the rule's, else the
    ``APPROVAL_REQUEST_LIFETIME`` setting, and which); the reuse window (0: never reused)."""
    if view is None:
        return None
    return {
        "always": view.always,
        "scopes": sorted(view.scopes),
        "min_depth": view.min_depth,
        "lifetime": view.lifetime or int(idp_settings.APPROVAL_REQUEST_LIFETIME),
        "lifetime_from_setting": view.lifetime is None,
        "reuse_seconds": view.reuse_seconds,
    }


def try_delegation(
    actor: Party,
    chain: Sequence[str],
    audiences: Sequence[str],
    *,
    subject_scope: frozenset[str],
    requested_scope: frozenset[str] | None = None,
    user: Any = None,
    may_act: Any = None,
    authorize: bool = False,
    id_jag: bool = False,
) -> DryRun:
    """``actor`` exchanging a user's token whose actor chain is ``chain`` (nearest first)
    for ``audiences`` (identity URIs), for an access token or, with ``id_jag``, an ID-JAG
    (``requested_token_type`` ``urn:ietf:params:oauth:token-type:id-jag``); or, with
    ``authorize``, a user authorizing ``actor`` for those audiences at the authorization
    endpoint (RFC 8707), where there is no chain."""
    store = policy_store.current()
    if authorize:
        # The authorization endpoint's own question: the user grants the scopes asked for
        # (the requested scope, else the subject's).
        explanation, ctx, _targets = resources.explain_direct(
            actor,
            list(audiences),
            user=user,
            scopes=sorted(requested_scope or subject_scope),
            store=store,
        )
        limits = policy.Limits(
            max_depth=idp_settings.MAX_DELEGATION_DEPTH,
            allow_repeated_actors=idp_settings.ALLOW_REPEATED_ACTORS,
        )
        allowed = _allowed_audiences(ctx, list(store.rules_for(actor)), limits, store, id_jag=None)
        return DryRun(explanation, ctx, limits, (), authorize=True, allowed=allowed)
    ctx, rules, limits = load(
        actor,
        tuple(chain),
        list(audiences),
        subject_scope=subject_scope,
        requested_scope=requested_scope,
        user=user,
        # A delegation of a user's token (a client's own token never matches "directly from a
        # user token").
        from_user=True,
        may_act=may_act,
        store=store,
    )
    # The same questions in the same order as a real exchange (delegation_idp.rfc8693.exchange).
    application = actor.application
    denied = policy.may_exchange(
        actor.as_view(),
        confidential=application is not None and application.client_type == "confidential",
    )
    if denied is not None:
        explanation = policy.Explanation(policy.Decision(allowed=False, reason=denied), ())
    else:
        explanation = policy.explain(ctx, rules, limits)
    decision = explanation.decision
    misdirected = (
        target_refusal(
            id_jag=id_jag,
            audiences=list(audiences),
            targets=decision.audience,
            kinds={uri: view.kind for uri, view in ctx.parties.items()},
        )
        if decision.allowed
        else None
    )
    if misdirected is not None:
        explanation = policy.Explanation(
            policy.Decision(allowed=False, reason=misdirected), explanation.rules
        )
    allowed = () if denied is not None else _allowed_audiences(ctx, rules, limits, store, id_jag=id_jag)
    issued = (actor.uri, *chain) if explanation.decision.allowed else ()
    return DryRun(explanation, ctx, limits, issued, authorize=False, allowed=allowed)


def _allowed_audiences(
    ctx: policy.ExchangeContext,
    rules: list[policy.RuleView],
    limits: policy.Limits,
    store: policy_store.PolicyStore,
    *,
    id_jag: bool | None,
) -> tuple[AllowedAudience, ...]:
    """Each audience a rule of the requester names, asked alone with everything else of
    ``ctx`` unchanged, of :func:`~delegation_idp.core.policy.explain` and (``id_jag`` not
    None: at the token endpoint) of the kind of token asked for; those allowed."""
    candidates = sorted({uri for rule in rules if rule.actor == ctx.requester.uri for uri in rule.audiences})
    parties = {**store.parties(candidates), **ctx.parties}
    kinds = {uri: view.kind for uri, view in parties.items()}
    allowed = []
    for uri in candidates:
        decision = policy.explain(replace(ctx, targets=(uri,), parties=parties), rules, limits).decision
        if not decision.allowed:
            continue
        if id_jag is not None and target_refusal(
            id_jag=id_jag, audiences=[uri], targets=decision.audience, kinds=kinds
        ):
            continue
        # The authorization endpoint (id_jag None) asks no approval: the user is there.
        approval = decision.approval if id_jag is not None else None
        allowed.append(AllowedAudience(uri, decision.rule_id, decision.granted_scope, approval))
    return tuple(allowed)


@dataclass(frozen=True)
class RedemptionDryRun:
    """What the ``jwt-bearer`` grant would answer for an ID-JAG with these claims, and why."""

    reason: Reason
    issuer: TrustedIssuer
    client_id: str
    #: the claims the dry run decided on (as if verified)
    claims: dict[str, Any]
    #: the resources, owners and scope, once they were allowed
    grant: decisions.Grant | None = None
    #: the local user, once it was looked up (also when there is none)
    user: decisions.UserMatch | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOWED

    @property
    def error(self) -> str | None:
        """The OAuth error of a refusal (the catalogue's)."""
        return None if self.allowed else self.reason.error

    @property
    def description(self) -> str:
        return self.reason.description

    def summary(self) -> dict[str, Any]:
        """The answer in plain values, for the admin's page and ``manage.py explain --json``.

        ``user`` says which local user: ``existing`` (by the issuer's claim), ``linked`` (to
        the issuer and ``sub``), ``new`` (one would be created just in time, named
        ``username``), or "" (none was looked up, or none is: ``user_why``)."""
        granted, match = self.grant, self.user
        user = match.user if match is not None else None
        how, username = "", ""
        if match is not None and not match.refused:
            how = "new" if match.create else "linked" if match.linked else "existing"
        if user is not None:
            username = user.get_username()
        elif how == "new":
            username = decisions.just_in_time_username(self.issuer, str(self.claims["sub"]))
        return {
            "allowed": self.allowed,
            "reason": self.reason.value,
            "error": self.error,
            "description": self.description,
            "issuer": self.issuer.issuer,
            "client_id": self.client_id,
            "user_mapping": self.issuer.user_mapping,
            "subject_claim": self.issuer.subject_claim,
            "audience": list(granted.audience) if granted is not None else [],
            "owners": list(granted.owners) if granted is not None else [],
            "granted_scope": granted.scope if granted is not None else "",
            "user": how,
            "username": username,
            "user_why": match.why if match is not None else "",
        }


def try_redemption(
    trusted: TrustedIssuer,
    client: Any,
    *,
    sub: str,
    asserted_resources: Sequence[str] = (),
    requested_resources: Sequence[str] = (),
    asserted_scope: str | None = None,
    requested_scope: str | None = None,
    claim_value: str = "",
    dpop: bool = False,
) -> RedemptionDryRun:
    """``client`` (a django-oauth-toolkit application) redeeming an ID-JAG of ``trusted``
    for ``sub`` that names ``asserted_resources`` and ``asserted_scope`` (None: no ``scope``
    claim), asking for ``requested_resources`` and ``requested_scope`` (None: no ``scope``
    parameter), with a DPoP proof or not; ``claim_value`` is the value of the issuer's
    ``subject_claim`` when that is not ``sub``. Reads only."""
    claims: dict[str, Any] = {
        "iss": trusted.issuer,
        "sub": sub,
        "aud": idp_settings.ISSUER,
        "client_id": client.client_id,
        "jti": DRY_RUN,
    }
    if asserted_resources:
        claims["resource"] = list(asserted_resources)
    if asserted_scope is not None:
        claims["scope"] = asserted_scope
    if claim_value:
        claims.setdefault(trusted.subject_claim, claim_value)

    def answer(reason: Reason, **found: Any) -> RedemptionDryRun:
        return RedemptionDryRun(reason, trusted, client.client_id, claims, **found)

    # The same questions in the same order as a real redemption (delegation_idp.rfc7523.grant
    # and .redeem.verify), without the assertion's cryptography and the jti's first use.
    form = [("assertion", DRY_RUN), *(("resource", r) for r in requested_resources)]
    if requested_scope is not None:
        form.append(("scope", requested_scope))
    try:
        request = parse(form)
    except OAuthError as refused:
        return answer(refused.reason)
    found = decisions.trusted_issuer(trusted.issuer)
    if found is None:
        return answer(Reason.ID_JAG_UNTRUSTED_ISSUER)
    refused_client = decisions.client_refusal(found, client)
    if refused_client is not None:
        return answer(refused_client)
    refused_claims = assertion_refusal(claims, issuer=idp_settings.ISSUER, client_id=client.client_id)
    if refused_claims is not None:
        return answer(refused_claims)
    granted = decisions.grant(found, claims, request, client, jkt=DRY_RUN if dpop else "")
    if isinstance(granted, Reason):
        return answer(granted)
    user = decisions.find_user(found, claims)
    if user.refused:
        return answer(Reason.ID_JAG_UNKNOWN_USER, grant=granted, user=user)
    return answer(Reason.ALLOWED, grant=granted, user=user)
