"""Issuing an allowed exchange (RFC 8693 section 2.2.1, RFC 9068): sign the token, then store
its lineage row and its audit record in one transaction.

The lineage row is the exchanged token's record: no django-oauth-toolkit
``AccessToken`` row is written for it, so django-oauth-toolkit's own resource
protection on the identity site (which looks tokens up in that table) refuses every
exchanged token, as it must: they are addressed to other services. Revocation
(RFC 7009), introspection (RFC 7662), the sweeps and the admin read lineage.

Inside the transaction, before the row is written, :func:`~delegation_idp.lineage.
issuance.record_issued` locks and re-checks the parent token, the parties, the user
and the signing key (one statement), so nothing revoked after the decision is issued.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import router, transaction
from oauth2_provider.settings import oauth2_settings

from delegation_idp import audit, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Exchange, Issuance
from delegation_idp.idjag import TOKEN_TYPE as ID_JAG_TOKEN_TYPE
from delegation_idp.idjag import TYP as ID_JAG_TYP
from delegation_idp.idjag import issued_claims as id_jag_claims
from delegation_idp.lineage.issuance import IssuanceBlocked, record_issued
from delegation_idp.models import TokenLineage
from delegation_idp.provider import status_lists, tokens
from delegation_idp.provider.keys import keyset
from delegation_idp.rfc8693.request import GRANT_TYPE

__all__ = ["issue", "lifetime", "signed_claims", "token_response"]

logger = logging.getLogger(__name__)

# What an exchange answers when the issuance re-check finds a change (IssuanceBlocked.what).
BLOCKED = {
    "parent": Reason.SUBJECT_REVOKED,
    "party": Reason.PARTY_DISABLED,
    "user": Reason.SUBJECT_USER_INACTIVE,
    "key": Reason.KEY_REVOKED,
}


def lifetime(exchange: Exchange, now: int) -> int:
    """Seconds the exchanged token lives: django-oauth-toolkit's access-token lifetime, capped
    by ``EXCHANGED_TOKEN_LIFETIME`` (an ID-JAG's by ``ID_JAG_LIFETIME`` alone), and never
    beyond the subject token."""
    if exchange.issued_token_type == ID_JAG_TOKEN_TYPE:
        cap = int(idp_settings.ID_JAG_LIFETIME)
    else:
        cap = min(
            int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS), int(idp_settings.EXCHANGED_TOKEN_LIFETIME)
        )
    return max(1, min(cap, exchange.subject_exp - now))


def signed_claims(exchange: Exchange, now: int) -> tuple[dict[str, Any], str, status_lists.Allocation | None]:
    """The claims of the token an exchange issues, and its JWS ``typ``: an RFC 9068 access
    token (``at+jwt``), or an ID-JAG (``oauth-id-jag+jwt``, draft-ietf-oauth-identity-
    assertion-authz-grant section 3) for the one external authorization server it names. An
    access token also takes an entry in a Token Status List; an ID-JAG, which lives minutes and
    is no access token, does not."""
    exp = now + lifetime(exchange, now)
    if exchange.issued_token_type == ID_JAG_TOKEN_TYPE:
        claims = id_jag_claims(
            issuer=idp_settings.ISSUER,
            sub=exchange.subject,
            audience=exchange.audience[0],
            client_id=exchange.assertion_client_id or exchange.client_id,
            jti=tokens.new_jti(),
            iat=now,
            exp=exp,
            resources=exchange.resources,
            scope=exchange.scope,
            act=exchange.act,
        )
        return claims, ID_JAG_TYP, None
    entry = tokens.status_entry()
    claims = tokens.access_token_claims(
        sub=exchange.subject,
        audience=exchange.audience,
        client_id=exchange.client_id,
        scope=exchange.scope,
        iat=now,
        exp=exp,
        act=exchange.act,
        jkt=exchange.jkt,
        status=entry.claim() if entry is not None else None,
        authorization_details=exchange.authorization_details,
    )
    return claims, "at+jwt", entry


def issue(exchange: Exchange, record: audit.Attempt, *, now: int | None = None) -> tuple[str, Issuance]:
    """The signed token and its :class:`Issuance`, stored with its audit record; raises the
    catalogue's refusal when the re-check finds a change, and lets storage errors through."""
    now = int(time.time()) if now is None else now
    claims, typ, entry = signed_claims(exchange, now)
    key = keyset.signing_key()
    token = jose.sign(claims, key, typ=typ)
    issuance = Issuance(
        claims=claims,
        kid=key.kid,
        grant_type=GRANT_TYPE,
        parties=exchange.parties,
        user_pk=exchange.user_pk,
        parent_jti=exchange.parent_jti,
        parent_path=exchange.parent_path,
        root_jti=exchange.root_jti,
        jkt=exchange.jkt,
        status_entry=(entry.list_number, entry.idx) if entry is not None else None,
        approval_id=exchange.approval_id,
    )
    record.jti, record.granted_scope = issuance.jti, exchange.scope
    record.granted_audience = issuance.audience
    try:
        with transaction.atomic(using=router.db_for_write(TokenLineage)):
            record_issued(issuance)
            audit.write_issued(record, TokenLineage)
    except IssuanceBlocked as blocked:
        audit.discard_issued_write(record)
        reason = BLOCKED[blocked.what]
        if reason is Reason.KEY_REVOKED:
            keyset.invalidate()  # this process still signed with it: reload at once
        logger.warning("token exchange refused at issuance: %s", reason.value)
        raise refusal(reason) from blocked
    except BaseException:
        audit.discard_issued_write(record)
        raise
    return token, issuance


def token_response(token: str, issuance: Issuance, exchange: Exchange) -> dict[str, Any]:
    """Section 2.2.1: the successful response; ``token_type`` ``DPoP`` for a bound token
    (RFC 9449 section 5), ``N_A`` for an ID-JAG, which is no access token (section 2.2.1
    and draft-ietf-oauth-identity-assertion-authz-grant section 4.3.2)."""
    if exchange.issued_token_type == ID_JAG_TOKEN_TYPE:
        token_type = "N_A"
    else:
        token_type = "DPoP" if exchange.jkt else "Bearer"
    return {
        "access_token": token,
        "issued_token_type": exchange.issued_token_type,
        "token_type": token_type,
        "expires_in": int(issuance.claims["exp"]) - int(issuance.claims["iat"]),
        "scope": exchange.scope,
    }
