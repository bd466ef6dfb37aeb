"""Deciding one token exchange (RFC 8693 sections 2.1 and 4): from a parsed request and
an authenticated client to an :class:`~delegation_idp.core.types.Exchange`, or a refusal.

In order, and nothing else decides an exchange:

1. the client may exchange at all (a registered, enabled agent or MCP server);
2. the subject token is ours: signed by a key of our set, unexpired, addressed to the
   client, and exactly the token its lineage row recorded (its DPoP key thumbprint
   included), unrevoked, with an active user; its ``act`` chain is bounded and well formed
   (for an ID-JAG, an ID token or refresh token of the client's may stand in for its access
   token: :mod:`delegation_idp.rfc8693.signin_subjects`);
3. the actor token, if sent, is the client's own live token;
3a. the DPoP bindings (RFC 9449): a party marked "DPoP required" sends a proof, a bound
   subject token is exchanged for a bound token only, and the subject's (or actor's) own
   client proves the key it is bound to (:func:`delegation_idp.core.policy.exchange_binding`);
4. the targets: ``audience`` values name parties, ``resource`` URLs map to the party
   whose identity URI or prefix covers them (RFC 8707);
5. the delegation policy (:func:`delegation_idp.core.policy.evaluate`) over the stored
   rules, the chain, the user, the scopes and ``may_act``;
6. the kind of token for the targets (:func:`delegation_idp.idjag.target_refusal`): an ID-JAG
   for one external authorization server and its resources, an access token for any other.

The database is read twice on the steady path: the subject token's lineage row with
its user and the policy version (one statement), and the client's row before this
(client authentication). The policy itself comes from this process's cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from delegation_idp import client_subject, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.actchain import ActChainError, build_act, chain_from_act, nest
from delegation_idp.core.errors import InvalidRequest, refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Exchange
from delegation_idp.idjag import TOKEN_TYPE as ID_JAG_TOKEN_TYPE
from delegation_idp.idjag import target_refusal
from delegation_idp.lineage.issuance import subject_record
from delegation_idp.models import Party, TokenLineage, party_of
from delegation_idp.provider import keys, policy_store
from delegation_idp.rfc8693.request import ID_JAG_SUBJECT_TYPES, ExchangeRequest
from delegation_idp.rfc8693.signin_subjects import verify_signin_subject
from delegation_idp.rfc9449 import Proof

__all__ = ["ExchangeHooks", "Subject", "decide", "verify"]


class ExchangeHooks(Protocol):
    """What a deployment may add to the decision (the grant's overridable methods)."""

    def validate_subject_claims(self, claims: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Subject:
    """A verified subject token: its claims, its lineage row (with the user and the policy
    version), its actor chain (nearest first) and the requesting party."""

    claims: Mapping[str, Any]
    parent: TokenLineage
    chain: tuple[str, ...]
    requester: Party
    client_id: str
    #: the chain is the one client a user authorized to address the requester directly
    #: (the subject token has no ``act``; see :func:`_authorizing_client`)
    user_authorized: bool = False
    #: the key the requester proved (RFC 9449), which the new token is bound to; "" for bearer
    jkt: str = ""


def bound_key(claims: Mapping[str, Any]) -> str:
    """A token's ``cnf.jkt`` (RFC 9449 section 6.1), "" for a bearer token."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else ""


def verify(
    request: ExchangeRequest, client: Any, hooks: ExchangeHooks, *, now: float, proof: Proof | None = None
) -> Subject:
    """Steps 1 to 3a: the client may exchange, the subject (and actor) tokens hold, and the
    DPoP bindings with ``proof``, the request's checked proof (or None)."""
    party = party_of(client)
    denied = policy.may_exchange(
        party.as_view() if party is not None else None,
        confidential=client.client_type == client.CLIENT_CONFIDENTIAL,
    )
    if denied is not None or party is None:
        raise refusal(denied or Reason.NOT_AN_AGENT)
    if request.subject_token_type in ID_JAG_SUBJECT_TYPES:
        # An ID token or refresh token of the client's (an ID-JAG request only): the root
        # access token issued with it stands for it; the requester is the first actor.
        claims, parent = verify_signin_subject(request.subject_token_type, request.subject_token, client, now)
        chain: tuple[str, ...] = ()
        user_authorized = False
    else:
        claims, parent, chain, user_authorized = _subject(request.subject_token, party, client.client_id, now)
    hooks.validate_subject_claims(claims)
    jkt = proof.jkt if proof is not None else ""
    unbound = policy.binding_refusal(party.as_view(), bound=bool(jkt)) or policy.exchange_binding(
        subject_jkt=bound_key(claims), holder=claims.get("client_id") == client.client_id, proof_jkt=jkt
    )
    if unbound is not None:
        raise refusal(unbound)
    if request.actor_token:
        _actor(request.actor_token, client.client_id, now, jkt)
    return Subject(
        claims=claims,
        parent=parent,
        chain=chain,
        requester=party,
        client_id=client.client_id,
        user_authorized=user_authorized,
        jkt=jkt,
    )


def decide(request: ExchangeRequest, subject: Subject, *, now: float, asking: bool = False) -> Exchange:
    """Steps 4 and 5: the targets and the delegation policy; the :class:`Exchange` it allowed,
    or the catalogue's refusal. A hop whose rule needs the user's approval is refused
    (``APPROVAL_REQUIRED``) unless the caller is asking for that approval (``asking``: the
    OpenID CIBA request and its poll, :mod:`delegation_idp.ciba`), which gets the
    :class:`Exchange` with the rule's terms in ``approval``."""
    parent, party, claims = subject.parent, subject.requester, subject.claims
    version = getattr(parent, "policy_version", None)  # read with the lineage row: no round trip
    store = policy_store.current(known=(parent._state.db or "default", version))
    targets = _targets(request, store)
    ctx, rules, limits = policy_store.load(
        party,
        subject.chain,
        targets,
        subject_scope=policy.scope_set(claims.get("scope", "")),
        requested_scope=policy.scope_set(request.scope) if request.scope else None,
        user=parent.user,
        from_user=parent.user_id is not None,
        may_act=claims.get("may_act"),
        now=datetime.fromtimestamp(now, tz=UTC),
        store=store,
        user_authorized=subject.user_authorized,
    )
    decision = policy.evaluate(ctx, rules, limits)
    if not decision.allowed:
        raise refusal(decision.reason)
    id_jag = request.requested_token_type == ID_JAG_TOKEN_TYPE
    misdirected = target_refusal(
        id_jag=id_jag,
        audiences=request.audiences,
        targets=decision.audience,
        kinds={uri: view.kind for uri, view in ctx.parties.items()},
    )
    if misdirected is not None:
        raise refusal(misdirected)
    if decision.needs_approval and not asking:
        raise refusal(Reason.APPROVAL_REQUIRED)
    return Exchange(
        client_id=subject.client_id,
        requester=party.uri,
        subject=claims["sub"],
        user_pk=parent.user_id,
        audience=decision.audience,
        scope=" ".join(sorted(decision.granted_scope)),
        # A user-authorized client is the subject's one actor although its token has no act.
        act=build_act(party.uri, claims.get("act") or nest(subject.chain)),
        chain=(party.uri, *subject.chain),
        subject_exp=int(claims["exp"]),
        parent_jti=parent.jti,
        parent_path=parent.path,
        root_jti=parent.root_jti,
        issued_token_type=request.requested_token_type,
        rule_id=decision.rule_id,
        # An ID-JAG is a grant for another server to redeem, not a token used here: it is
        # not sender-constrained (the draft defines no binding); its client_id is the one
        # the requester has at that server, and it names the resources as asked.
        jkt="" if id_jag else subject.jkt,
        resources=request.resources,
        assertion_client_id=_client_id_at(decision.audience[0], party, subject.client_id) if id_jag else "",
        approval=decision.approval,
    )


def _subject(
    token: str, party: Party, client_id: str, now: float
) -> tuple[dict[str, Any], TokenLineage, tuple[str, ...], bool]:
    """The subject token's claims, its lineage row, its actor chain (nearest first), and
    whether that chain is a client the user authorized to address this one directly."""
    try:
        header, claims = keys.verify(token, now=now)
    except jose.JoseError as exc:
        raise InvalidRequest(Reason.for_token_error("subject", exc.reason)) from exc
    own = (party.uri, *party.prefixes())
    if not any(policy.resource_under(aud, p) for aud in jose.audiences(claims) for p in own):
        # Addressed to the client: its identity URI, or an RFC 8707 resource of its own.
        raise InvalidRequest(Reason.SUBJECT_WRONG_AUDIENCE)
    # A token without act was issued to its client_id: for the client itself, or (RFC 8707
    # at the authorization endpoint) for this client, by a user's authorization. Held by
    # anyone else, another client passed it on unrecorded: refused, or the chain would
    # lose an actor. (A token with act is one of our exchanges; its client is the newest
    # actor, recorded in act, and the lineage row checks it below.)
    authorized_by_user = "act" not in claims and claims.get("client_id") != client_id
    try:  # bounded and pure: before any database look-up
        chain = chain_from_act(claims.get("act"), max_depth=idp_settings.MAX_DELEGATION_DEPTH)
    except ActChainError as exc:
        raise InvalidRequest(exc.reason) from exc
    parent = subject_record(claims["jti"])
    if parent is None:
        raise InvalidRequest(Reason.SUBJECT_UNKNOWN)
    if party.uri not in jose.audiences(claims) and not _owns_an_audience(party, claims, parent):
        # Under the client's prefix, but another party's more closely: not addressed to it.
        raise InvalidRequest(Reason.SUBJECT_WRONG_AUDIENCE)
    if authorized_by_user:
        upstream = _authorizing_client(claims, parent, party)
        if upstream is None:
            raise InvalidRequest(Reason.SUBJECT_FOREIGN_CLIENT)
        chain = (upstream,)
    if not _matches_lineage(header, claims, parent):
        # Signed by a key of ours, but not the token recorded under this jti: a
        # compromised or revoked key must not launder another token's lineage.
        raise InvalidRequest(Reason.SUBJECT_LINEAGE_MISMATCH)
    if parent.revoked_at is not None:
        raise InvalidRequest(Reason.SUBJECT_REVOKED)
    if parent.user is not None and not parent.user.is_active:
        raise InvalidRequest(Reason.SUBJECT_USER_INACTIVE)
    return claims, parent, chain, authorized_by_user


def _client_id_at(issuer: str, party: Party, client_id: str) -> str:
    """The requester's client id at the external authorization server ``issuer`` (one query,
    for an ID-JAG only)."""
    server = Party.objects.filter(uri=issuer).only("client_ids").first()
    return server.client_id_for(party.uri, client_id) if server is not None else client_id


def _owns_an_audience(party: Party, claims: Mapping[str, Any], parent: TokenLineage) -> bool:
    """Whether one of the token's audiences is a resource of ``party``'s: the party whose URI or
    prefix covers it most closely (the policy as of the lineage row's version: no query when
    this process has it cached)."""
    store = policy_store.current(
        known=(parent._state.db or "default", getattr(parent, "policy_version", None))
    )
    owners = store.resource_owners()
    return any(policy.resource_owner(aud, owners) == party.uri for aud in jose.audiences(claims))


# The grants by which a user authorizes a client at the authorization endpoint.
_USER_GRANTS = frozenset({"authorization_code", "refresh_token"})


def _authorizing_client(claims: Mapping[str, Any], parent: TokenLineage, party: Party) -> str | None:
    """The identity URI of the registered party that a user authorized to address ``party``
    directly (the subject token's client), or None when the token is not such a token: one
    with a user, of a grant the user authorized, issued to another registered party, and
    recorded as addressed to ``party`` as another party's (only a delegation rule lets a
    registered party's token name another party's resource; an application's allow-list,
    ``Party.clients``, is no delegation)."""
    if parent.user_id is None or parent.grant_type not in _USER_GRANTS:
        return None
    if f"|{party.uri}|" not in (parent.parties or ""):
        return None
    uri = (
        Party.objects.using(parent._state.db)
        .filter(application__client_id=claims.get("client_id"))
        .values_list("uri", flat=True)
        .first()
    )
    return uri if uri is not None and uri != party.uri else None


def _actor(token: str, client_id: str, now: float, jkt: str) -> None:
    """Section 2.1: the actor token must identify the authenticated client: a token it holds
    for itself (its own ``client_id``, and the ``sub`` of a token without a resource owner,
    never a user's, whatever the client id looks like), still live, and, when it is DPoP-bound,
    bound to the key the client proved (``jkt``)."""
    try:
        _header, claims = keys.verify(token, now=now)
    except jose.JoseError as exc:
        raise InvalidRequest(Reason.for_token_error("actor", exc.reason)) from exc
    if claims.get("client_id") != client_id or claims.get("sub") != client_subject(client_id):
        raise InvalidRequest(Reason.ACTOR_MISMATCH)
    actor_jkt = bound_key(claims)
    row = TokenLineage.objects.filter(jti=claims["jti"]).only("revoked_at", "jkt").first()
    if row is None or row.revoked_at is not None:
        raise InvalidRequest(Reason.ACTOR_REVOKED)
    if actor_jkt != row.jkt:
        raise InvalidRequest(Reason.ACTOR_MISMATCH)  # not the token lineage recorded
    if actor_jkt and actor_jkt != jkt:
        raise refusal(Reason.DPOP_KEY_MISMATCH)


def _targets(request: ExchangeRequest, store: policy_store.PolicyStore) -> tuple[str, ...]:
    """``audience`` values name registered parties; each ``resource`` maps to its owner
    (or stays itself, and then names no party: the policy refuses it like any unknown one)."""
    targets: list[str] = list(request.audiences)
    if request.resources:
        owners = store.resource_owners()
        targets += [policy.resource_owner(r, owners) or r for r in request.resources]
    return tuple(dict.fromkeys(targets))


def _matches_lineage(header: Mapping[str, Any], claims: Mapping[str, Any], parent: TokenLineage) -> bool:
    """The verified token is the one its lineage row recorded: same key, subject,
    client, audience, scope, actor chain and DPoP key thumbprint."""
    audience = [claims["aud"]] if isinstance(claims.get("aud"), str) else claims.get("aud")
    return (
        header.get("kid") == parent.kid
        and claims.get("sub") == parent.subject
        and claims.get("client_id") == parent.client_id
        and audience == parent.audience
        and claims.get("scope", "") == parent.scope
        and claims.get("act") == parent.act
        and bound_key(claims) == parent.jkt
        and ("cnf" not in claims or bool(parent.jkt))
    )
