"""JWT access tokens (RFC 9068) for django-oauth-toolkit's own grants, through its
``ACCESS_TOKEN_GENERATOR`` hook.

oauthlib calls the generator with its request after the grant (authorization code,
refresh token, client credentials) has validated it. The generator builds and signs
the claims and leaves one typed record on the request, :class:`TokenState`, which the
validator (:mod:`delegation_idp.provider.validators`) reads to store the token's
lineage in the transaction that stores the token. Token exchange does not come here:
its pipeline signs and stores its own tokens (:mod:`delegation_idp.rfc8693`).

Which audiences a token may name is the policy's decision
(:func:`delegation_idp.core.policy.own_token_resources` and
:func:`~delegation_idp.core.policy.client_resources`); this module only asks.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.tokens import random_token_generator

from delegation_idp import client_subject, is_client_subject, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Issuance
from delegation_idp.models import party_of
from delegation_idp.provider import policy_store
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
) -> dict[str, Any]:
    """The claims of an RFC 9068 access token (section 2.2), with ``act`` for a delegated one
    (RFC 8693 section 4.1): ``aud`` a string when there is one audience."""
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
    return claims


def jwt_enabled_for(client: Any) -> bool:
    if idp_settings.JWT_ACCESS_TOKENS == "all":
        return True
    party = party_of(client)
    return party is not None or getattr(client, "client_id", None) in idp_settings.JWT_CLIENT_IDS


def checked_resources(request: Request, client: Any, party: Any) -> list[str]:
    """Every value of a repeated RFC 8707 ``resource`` (oauthlib keeps only the last), each
    one allowed by the policy. Opaque tokens carry them too (django-oauth-toolkit stores
    them as the token's audience), so both formats are checked. A registered party's own
    token stays its own; any other application reaches only the parties that list it
    (``Party.clients``, from the per-process policy cache)."""
    resources = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
    if party is not None:
        denied = policy.own_token_resources(resources, (party.uri, *party.prefixes()))
    elif resources:
        allowed = policy_store.current().client_audiences(client.pk)
        denied = policy.client_resources(resources, (p for uri, ps in allowed for p in (uri, *ps)))
    else:
        denied = None
    if denied is not None:
        raise for_oauthlib(refusal(denied))
    return resources


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
    resources = checked_resources(request, client, party)
    if not jwt_enabled_for(client):
        return random_token_generator(request)
    now = int(time.time())
    user = getattr(request, "user", None)
    user_pk = getattr(user, "pk", None)
    # RFC 9068 section 2.2: without a resource owner, sub names the client, in a
    # namespace that no user subject can take.
    sub = user_subject(user) if user_pk is not None else client_subject(client.client_id)
    audience = resources or [party.uri if party is not None else client.client_id]
    claims = access_token_claims(
        sub=sub,
        audience=audience,
        client_id=client.client_id,
        scope=" ".join(request.scopes or []),
        iat=now,
        exp=now + int(request.expires_in),
    )
    key = keyset.signing_key()
    token = jose.sign(claims, key)
    parties = tuple(dict.fromkeys([*([party.uri] if party is not None else []), *audience]))
    state_of(request).issuance = Issuance(
        claims=claims,
        kid=key.kid,
        grant_type=request.grant_type or "",
        parties=parties,
        user_pk=user_pk,
        code=getattr(request, "code", None) if request.grant_type == "authorization_code" else None,
    )
    return token
