"""JWT access tokens (RFC 9068) for django-oauth-toolkit's own grants, through its
``ACCESS_TOKEN_GENERATOR`` hook.

oauthlib calls the generator with its request after the grant (authorization code,
refresh token, client credentials) has validated it. The generator builds and signs
the claims and leaves one typed record on the request, :class:`TokenState`, which the
validator (:mod:`delegation_idp.provider.validators`) reads to store the token's
lineage in the transaction that stores the token. Token exchange does not come here:
its pipeline signs and stores its own tokens (:mod:`delegation_idp.rfc8693`).

Which audiences a token may name is the policy's decision
(:func:`delegation_idp.provider.resources.authorize`); this module only asks.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oauth2_provider.models import get_grant_model
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.tokens import random_token_generator

from delegation_idp import client_subject, is_client_subject, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.errors import OAuthError, refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Issuance
from delegation_idp.models import party_of
from delegation_idp.provider import dpop, resources, status_lists
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.resilience import for_oauthlib

__all__ = [
    "TokenState",
    "access_token_claims",
    "default_subject",
    "email_subject",
    "generate_access_token",
    "state_of",
]

logger = logging.getLogger(__name__)


def default_subject(user: Any) -> str:
    """``sub`` for a user: its primary key, stable and not reassigned (RFC 9068 section 2.2)."""
    return str(user.pk)


def email_subject(user: Any) -> str:
    """``sub`` for a user: its email address, as in the seed's example (``user@example.com``)."""
    return str(getattr(user, user.get_email_field_name(), "") or user.get_username())


@dataclass
class TokenState:
    """What one token request of django-oauth-toolkit's grants carries between its hooks
    (the one attribute this app sets on the oauthlib request, ``request.delegation``):
    the issued JWT, or the opaque access token and refresh token django-oauth-toolkit
    stored, and whether the authorization code was consumed with them."""

    issuance: Issuance | None = None
    opaque_token: Any = None
    refresh_token: Any = None
    code_consumed: bool = False


def state_of(request: Request) -> TokenState:
    """The request's :class:`TokenState`, created on first use."""
    state = getattr(request, "delegation", None)
    if not isinstance(state, TokenState):
        state = TokenState()
        request.delegation = state
    return state


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def access_token_claims(
    *,
    sub: str,
    audience: Sequence[str],
    client_id: str,
    scope: str,
    iat: int,
    exp: int,
    act: Mapping[str, Any] | None = None,
    jkt: str = "",
    status: Mapping[str, Any] | None = None,
    authorization_details: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The claims of an RFC 9068 access token (section 2.2), with ``act`` for a delegated one
    (RFC 8693 section 4.1), ``cnf`` for one bound to a DPoP key (RFC 9449 section 6.1),
    ``status`` for its Token Status List entry (draft-ietf-oauth-status-list section 6.2) and
    the ``authorization_details`` its user approved (RFC 9396 section 9.1): ``aud`` a string
    when there is one audience."""
    claims: dict[str, Any] = {
        "iss": idp_settings.ISSUER,
        "sub": sub,
        "aud": audience[0] if len(audience) == 1 else list(audience),
        "exp": exp,
        "iat": iat,
        "jti": new_jti(),
        "client_id": client_id,
        "scope": scope,
    }
    if act is not None:
        claims["act"] = dict(act)
    if jkt:
        claims["cnf"] = {"jkt": jkt}
    if status is not None:
        claims["status"] = dict(status)
    if authorization_details:
        claims["authorization_details"] = [dict(detail) for detail in authorization_details]
    return claims


def status_entry() -> status_lists.Allocation | None:
    """A fresh Token Status List entry for a JWT being issued, None when lists are off."""
    return status_lists.allocate() if status_lists.enabled() else None


def jwt_enabled_for(client: Any) -> bool:
    if idp_settings.JWT_ACCESS_TOKENS == "all":
        return True
    party = party_of(client)
    return party is not None or getattr(client, "client_id", None) in idp_settings.JWT_CLIENT_IDS


def stored_resources(request: Request, client: Any) -> list[str]:
    """The resources the grant was authorized for: the authorization code's (asked at the
    authorization endpoint, shown on the consent page) or the refresh token's
    (django-oauth-toolkit stores both)."""
    if request.grant_type == "authorization_code" and getattr(request, "code", None):
        stored = (
            get_grant_model()
            .objects.filter(code=request.code, application=client)
            .values_list("resource", flat=True)
            .first()
        )
        return list(stored or [])
    if request.grant_type == "refresh_token":
        return list(getattr(getattr(request, "refresh_token_instance", None), "resource", None) or [])
    return []


def checked_resources(request: Request, client: Any, party: Any) -> resources.Authorized:
    """The token's audiences, each one allowed by the policy
    (:func:`delegation_idp.provider.resources.authorize`): every value of a repeated RFC 8707
    ``resource`` (oauthlib keeps only the last) or, without any, the grant's. Opaque tokens
    carry them too (django-oauth-toolkit stores them as the token's audience), so both
    formats are checked."""
    asked = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
    user = getattr(request, "user", None)
    if getattr(user, "pk", None) is None:
        user = None
    consented: Any = None
    if user is not None and request.grant_type in ("authorization_code", "refresh_token"):
        consented = (lambda: stored_resources(request, client)) if asked else None
    elif user is not None:
        consented = tuple  # no consent page (the password grant): never another party's resource
    try:
        return resources.authorize(
            party,
            asked or stored_resources(request, client),
            user=user,
            scopes=list(request.scopes or []),
            allowed_for_client=client.pk,
            consented=consented,
        )
    except OAuthError as exc:
        raise for_oauthlib(exc) from None


def user_subject(user: Any) -> str:
    """``SUBJECT_RESOLVER(user)``, refused when it falls in the namespace reserved for
    clients: a misconfigured resolver must never make a user's token read as a client's."""
    sub = str(idp_settings.SUBJECT_RESOLVER(user))
    if is_client_subject(sub):
        logger.error("SUBJECT_RESOLVER returned a subject in the reserved client namespace; refused")
        raise for_oauthlib(refusal(Reason.SUBJECT_RESERVED))
    return sub


def generate_access_token(request: Request) -> str:
    """The ``ACCESS_TOKEN_GENERATOR``: a signed ``at+jwt``, or an opaque token for
    applications that keep django-oauth-toolkit's format. A refusal is raised as oauthlib's
    error (django-oauth-toolkit answers it, at the token and the authorization endpoint alike),
    its reason on the audit record."""
    client = request.client
    party = party_of(client)
    jkt = dpop.bound_key_of(request) or ""
    unbound = policy.binding_refusal(party.as_view() if party is not None else None, bound=bool(jkt))
    if unbound is not None:
        raise for_oauthlib(refusal(unbound))
    authorized = checked_resources(request, client, party)
    if not jwt_enabled_for(client):
        # django-oauth-toolkit's opaque tokens carry no binding: a Bearer token, as RFC 9449
        # section 5 lets a server answer a proof (token_type tells the client).
        return random_token_generator(request)
    now = int(time.time())
    user = getattr(request, "user", None)
    user_pk = getattr(user, "pk", None)
    # RFC 9068 section 2.2: without a resource owner, sub names the client, in a
    # namespace that no user subject can take.
    sub = user_subject(user) if user_pk is not None else client_subject(client.client_id)
    audience = list(authorized.audience) or [party.uri if party is not None else client.client_id]
    entry = status_entry()
    claims = access_token_claims(
        sub=sub,
        audience=audience,
        client_id=client.client_id,
        scope=" ".join(request.scopes or []),
        iat=now,
        exp=now + int(request.expires_in),
        jkt=jkt,
        status=entry.claim() if entry is not None else None,
    )
    if jkt:
        # RFC 9449 section 5: a bound token's response says so. oauthlib merges the request's
        # extra credentials into the response after it generated the token.
        request.extra_credentials = {
            **(getattr(request, "extra_credentials", None) or {}),
            "token_type": "DPoP",
        }
    key = keyset.signing_key()
    token = jose.sign(claims, key)
    parties = tuple(
        dict.fromkeys([*([party.uri] if party is not None else []), *authorized.owners, *audience])
    )
    state_of(request).issuance = Issuance(
        claims=claims,
        kid=key.kid,
        grant_type=request.grant_type or "",
        parties=parties,
        user_pk=user_pk,
        code=getattr(request, "code", None) if request.grant_type == "authorization_code" else None,
        jkt=jkt,
        status_entry=(entry.list_number, entry.idx) if entry is not None else None,
    )
    return token
