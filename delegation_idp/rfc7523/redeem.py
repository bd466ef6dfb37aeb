"""Redeeming an ID-JAG with the ``jwt-bearer`` grant (RFC 7523 section 3,
draft-ietf-oauth-identity-assertion-authz-grant section 5.1): verify, then issue.

In order, and nothing else decides a redemption:

1. the header: size, ``typ`` ``oauth-id-jag+jwt``, an asymmetric algorithm, a ``kid``;
2. the issuer: the unverified ``iss`` names an enabled :class:`~delegation_idp.models.
   TrustedIssuer` (only to pick its keys), the authenticated client is one of the clients that
   may redeem its grants, the header's algorithm one of its algorithms;
3. the signature, by the key of the issuer's own JWKS with that ``kid``
   (:mod:`delegation_idp.provider.trusted_issuers`), then ``iss``, ``exp``, ``iat``, ``nbf``;
4. the draft's claims (:func:`delegation_idp.idjag.assertion_refusal`): ``aud`` this
   provider's issuer, ``client_id`` the authenticated client; its ``act`` chain bounded;
5. the resources, each one the ID-JAG names and a registered party's (RFC 8707) that the
   issuer's registration lets its ID-JAGs reach (``services``), and the scope, the
   intersection of the requested and the asserted;
6. the ``jti``, once across every process (the replay store DPoP uses,
   :class:`delegation_idp.rfc9449.replay.CacheReplayStore`);
7. the local user: an existing one by a claim, or one created just in time for the
   (issuer, ``sub``) pair, as the issuer's registration says.

The decisions that need no cryptography (the issuer and the client of step 2, step 5 and
the client's standing, step 7) are :mod:`delegation_idp.rfc7523.decisions`, which the admin's
dry run of a redemption asks in the same order.

Then an RFC 9068 access token for the user, addressed to the resources, with the ID-JAG's
``act`` chain carried on, is signed and stored with its lineage row (a root: its parent is
another server's) and its audit record in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import router, transaction
from oauth2_provider.settings import oauth2_settings

from delegation_idp import audit, is_client_subject, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core.actchain import ActChainError, chain_from_act
from delegation_idp.core.errors import (
    InvalidGrant,
    TemporarilyUnavailable,
    refusal,
)
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Issuance
from delegation_idp.idjag import TYP, assertion_refusal
from delegation_idp.lineage.issuance import IssuanceBlocked, record_issued
from delegation_idp.models import TokenLineage, TrustedIssuer
from delegation_idp.provider import tokens, trusted_issuers
from delegation_idp.provider.keys import keyset
from delegation_idp.rfc7523.decisions import client_refusal, grant, local_user, trusted_issuer
from delegation_idp.rfc7523.request import GRANT_TYPE, BearerRequest
from delegation_idp.rfc8693.issue import BLOCKED
from delegation_idp.rfc9449.replay import CacheReplayStore, ReplayStoreUnavailable

__all__ = ["Redemption", "issue", "local_user", "token_response", "verify"]

logger = logging.getLogger(__name__)

# The claims every ID-JAG carries (the draft's section 3).
REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")
# An ID-JAG is a short-lived assertion (the draft's examples live five minutes): one valid
# for more than an hour is refused, which also bounds how long its jti is remembered.
MAX_LIFETIME = 3600
MAX_SUBJECT_LENGTH = 255  # ExternalIdentity.subject: a longer sub could not be linked


@dataclass(frozen=True)
class Redemption:
    """A verified ID-JAG and what it grants: for which user, which resources (and their
    registered owners), which scope and ``act`` chain."""

    claims: Mapping[str, Any]
    issuer: TrustedIssuer
    user: Any
    audience: tuple[str, ...]
    owners: tuple[str, ...]
    scope: str
    act: Mapping[str, Any] | None
    client_id: str
    jkt: str = ""
    #: the client's registered party ("" for an application that is none)
    party: str = ""


def _invalid(exc: jose.JoseError) -> InvalidGrant:
    return InvalidGrant(Reason.for_token_error("id_jag", exc.reason))


def _trusted(token: str, client: Any) -> tuple[TrustedIssuer, dict[str, Any]]:
    """Steps 1 and 2: the header, and the trusted issuer the unverified ``iss`` names."""
    try:
        header = jose.peek_header(
            token,
            algorithms=jose.ASYMMETRIC_ALGORITHMS,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            expected_typ=TYP,
        )
        unverified = jose.unverified_claims(
            token, max_bytes=idp_settings.MAX_TOKEN_BYTES, max_json_depth=idp_settings.MAX_JSON_DEPTH
        )
    except jose.JoseError as exc:
        raise _invalid(exc) from exc
    trusted = trusted_issuer(unverified.get("iss"))
    if trusted is None:
        raise InvalidGrant(Reason.ID_JAG_UNTRUSTED_ISSUER)
    not_allowed = client_refusal(trusted, client)
    if not_allowed is not None:
        raise refusal(not_allowed)
    if header["alg"] not in trusted.algorithm_list():
        raise InvalidGrant(Reason.ID_JAG_BAD_ALG)
    return trusted, header


def verify(request: BearerRequest, client: Any, *, now: float, jkt: str = "") -> Redemption:
    """Steps 1 to 7; the :class:`Redemption`, or the catalogue's refusal. ``jkt`` is the key
    the request's DPoP proof proved (RFC 9449), which the token is bound to ("" for bearer)."""
    trusted, header = _trusted(request.assertion, client)
    algorithms = [a for a in trusted.algorithm_list() if a in jose.ASYMMETRIC_ALGORITHMS]
    alg = str(header["alg"])

    def resolve(kid: str) -> jose.SigningKey | None:
        return trusted_issuers.key_for(trusted.issuer, trusted.jwks_uri, kid, alg)

    try:
        _header, claims = jose.verify(
            request.assertion,
            resolve,
            algorithms=algorithms,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            expected_typ=TYP,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_json_depth=idp_settings.MAX_JSON_DEPTH,
        )
        jose.validate_claims(
            claims, issuer=trusted.issuer, now=now, leeway=idp_settings.CLOCK_SKEW_SECONDS, required=REQUIRED
        )
    except trusted_issuers.KeysUnavailable as exc:
        raise TemporarilyUnavailable(Reason.ID_JAG_KEYS_UNAVAILABLE) from exc
    except jose.JoseError as exc:
        raise _invalid(exc) from exc
    refused = assertion_refusal(claims, issuer=idp_settings.ISSUER, client_id=client.client_id)
    if refused is not None:
        raise InvalidGrant(refused)
    if float(claims["exp"]) > now + MAX_LIFETIME + int(idp_settings.CLOCK_SKEW_SECONDS):
        raise InvalidGrant(Reason.ID_JAG_EXPIRED)  # an ID-JAG lives minutes, never a day
    if len(str(claims["sub"])) > MAX_SUBJECT_LENGTH:
        raise InvalidGrant(Reason.ID_JAG_MALFORMED)
    act = claims.get("act")
    try:
        chain_from_act(act, max_depth=idp_settings.MAX_DELEGATION_DEPTH)
    except ActChainError as exc:
        raise InvalidGrant(Reason.ID_JAG_BAD_ACT) from exc
    granted = grant(trusted, claims, request, client, jkt=jkt)
    if isinstance(granted, Reason):
        raise refusal(granted)
    _first_use(trusted.issuer, claims, now)
    user = local_user(trusted, claims)
    if user is None:
        raise InvalidGrant(Reason.ID_JAG_UNKNOWN_USER)
    return Redemption(
        claims=claims,
        issuer=trusted,
        user=user,
        audience=granted.audience,
        owners=granted.owners,
        scope=granted.scope,
        act=act if isinstance(act, dict) else None,
        client_id=client.client_id,
        jkt=jkt,
        party=granted.party,
    )


def _first_use(issuer: str, claims: Mapping[str, Any], now: float) -> None:
    """Step 6: the ``jti`` is remembered until the ID-JAG expires (plus the clock skew), in the
    cache every process shares; a second use anywhere is refused."""
    ttl = max(1, int(float(claims["exp"]) - now) + int(idp_settings.CLOCK_SKEW_SECONDS))
    store = CacheReplayStore(idp_settings.ID_JAG_REPLAY_CACHE_ALIAS)
    try:
        first = store.first_use(f"id-jag|{issuer}|{claims['jti']}", ttl)
    except ReplayStoreUnavailable as exc:
        raise TemporarilyUnavailable(Reason.ID_JAG_REPLAY_UNAVAILABLE) from exc
    if not first:
        raise InvalidGrant(Reason.ID_JAG_REPLAYED)


def issue(redemption: Redemption, record: audit.Attempt, *, now: int) -> tuple[str, Issuance]:
    """The access token, signed and stored with its lineage row and audit record; the
    catalogue's refusal when the issuance re-check finds a change."""
    sub = str(idp_settings.SUBJECT_RESOLVER(redemption.user))
    if is_client_subject(sub):
        raise refusal(Reason.SUBJECT_RESERVED)
    lifetime = int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
    entry = tokens.status_entry()  # an access token: it takes a Token Status List entry
    claims = tokens.access_token_claims(
        sub=sub,
        audience=redemption.audience,
        client_id=redemption.client_id,
        scope=redemption.scope,
        iat=now,
        exp=now + lifetime,
        act=redemption.act,
        jkt=redemption.jkt,
        status=entry.claim() if entry is not None else None,
    )
    key = keyset.signing_key()
    token = jose.sign(claims, key)
    issuance = Issuance(
        claims=claims,
        kid=key.kid,
        grant_type=GRANT_TYPE,
        # The registered parties it relies on, re-checked at issuance: the client's, the owners'.
        parties=tuple(dict.fromkeys([*([redemption.party] if redemption.party else []), *redemption.owners])),
        user_pk=redemption.user.pk,
        jkt=redemption.jkt,
        status_entry=(entry.list_number, entry.idx) if entry is not None else None,
    )
    record.jti, record.granted_scope = issuance.jti, redemption.scope
    record.granted_audience = issuance.audience
    try:
        with transaction.atomic(using=router.db_for_write(TokenLineage)):
            record_issued(issuance)
            audit.write_issued(record, TokenLineage)
    except IssuanceBlocked as blocked:
        audit.discard_issued_write(record)
        raise refusal(BLOCKED[blocked.what]) from blocked
    except BaseException:
        audit.discard_issued_write(record)
        raise
    return token, issuance


def token_response(token: str, issuance: Issuance, redemption: Redemption) -> dict[str, Any]:
    """RFC 6749 section 5.1 (``DPoP`` for a bound token, RFC 9449 section 5)."""
    return {
        "access_token": token,
        "token_type": "DPoP" if redemption.jkt else "Bearer",
        "expires_in": int(issuance.claims["exp"]) - int(issuance.claims["iat"]),
        "scope": redemption.scope,
    }
