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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.idjag import target_refusal
from delegation_idp.models import Party
from delegation_idp.provider import resources
from delegation_idp.provider.policy_store import load

__all__ = ["DryRun", "try_delegation"]


@dataclass(frozen=True)
class DryRun:
    """The decision with every rule's outcome, and what it was decided on."""

    explanation: policy.Explanation
    context: policy.ExchangeContext
    limits: policy.Limits
    #: the issued token's actor chain, nearest first (empty at the authorization endpoint)
    issued_chain: tuple[str, ...]
    authorize: bool

    @property
    def decision(self) -> policy.Decision:
        return self.explanation.decision


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
    if authorize:
        # The authorization endpoint's own question: the user grants the scopes asked for
        # (the requested scope, else the subject's).
        explanation, ctx, _targets = resources.explain_direct(
            actor,
            list(audiences),
            user=user,
            scopes=sorted(requested_scope or subject_scope),
        )
        limits = policy.Limits(
            max_depth=idp_settings.MAX_DELEGATION_DEPTH,
            allow_repeated_actors=idp_settings.ALLOW_REPEATED_ACTORS,
        )
        return DryRun(explanation, ctx, limits, (), authorize=True)
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
    return DryRun(explanation, ctx, limits, (actor.uri, *chain), authorize=False)
