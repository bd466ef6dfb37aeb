"""JWT access tokens (RFC 9068) for every grant, through django-oauth-toolkit's
``ACCESS_TOKEN_GENERATOR`` hook.

oauthlib calls the generator with its request after the grant has validated
it; the grant leaves an :class:`Exchange` on the request when the token is a
delegated one. The claims that were signed are left on the request as
``request.delegation_issued`` so the validator records the token's lineage in
the same transaction that stores it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.tokens import random_token_generator

from . import audit, jose
from .conf import idp_settings
from .keys import keyset
from .models import party_of
from .policy import resource_under

__all__ = ["Exchange", "Issued", "default_subject", "email_subject", "generate_access_token"]


def default_subject(user: Any) -> str:
    """``sub`` for a user: its primary key, stable and not reassigned (RFC 9068 section 2.2)."""
    return str(user.pk)


def email_subject(user: Any) -> str:
    """``sub`` for a user: its email address, as in the seed's example (``user@example.com``)."""
    return str(getattr(user, user.get_email_field_name(), "") or user.get_username())


@dataclass
class Exchange:
    """What a validated token exchange hands to the token generator."""

    subject: str
    audience: tuple[str, ...]
    act: dict[str, Any]
    subject_exp: int
    parent_jti: str
    parent_path: str
    root_jti: str
    depth: int
    chain: tuple[str, ...]
    requester_uri: str


@dataclass
class Issued:
    claims: dict[str, Any]
    kid: str
    parties: list[str] = field(default_factory=list)


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def jwt_enabled_for(client: Any) -> bool:
    if idp_settings.JWT_ACCESS_TOKENS == "all":
        return True
    party = party_of(client)
    return party is not None or getattr(client, "client_id", None) in idp_settings.JWT_CLIENT_IDS


def expires_in_for(request: Request, default: int) -> int:
    """The lifetime of a token: delegated tokens never outlive their subject token."""
    exchange: Exchange | None = getattr(request, "delegation", None)
    if exchange is None:
        return default
    remaining = exchange.subject_exp - int(time.time())
    return max(1, min(default, int(idp_settings.EXCHANGED_TOKEN_LIFETIME), remaining))


def _own_resources_only(request: Request, party: Any, resources: list[str]) -> None:
    """An agent's own tokens (authorization code, refresh, client credentials) are
    addressed to the agent itself: any other audience is reached only by token
    exchange, through a delegation rule, with the agent recorded in ``act``."""
    from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

    own = (party.uri, *party.prefixes())
    for resource in resources:
        if not any(resource_under(resource, prefix) for prefix in own):
            raise CustomOAuth2Error(
                error="invalid_target",
                description="An agent's own token can only be addressed to the agent; "
                "use token exchange to reach another party.",
                request=request,
            )


def build_claims(request: Request, now: int) -> tuple[dict[str, Any], list[str]]:
    client = request.client
    party = party_of(client)
    exchange: Exchange | None = getattr(request, "delegation", None)
    scope = " ".join(request.scopes or [])
    parties: list[str] = [party.uri] if party is not None else []
    if exchange is not None:
        sub, audience = exchange.subject, list(exchange.audience)
        exp = now + int(request.expires_in)
        exp = min(exp, exchange.subject_exp)
        parties += list(exchange.chain)
    else:
        user = getattr(request, "user", None)
        if user is not None and getattr(user, "pk", None) is not None:
            sub = idp_settings.SUBJECT_RESOLVER(user)
        else:
            # RFC 9068 section 2.2: without a resource owner, sub names the client.
            sub = party.uri if party is not None else client.client_id
        # Every value of a repeated RFC 8707 ``resource`` (oauthlib keeps only the last).
        resources = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
        if party is not None:
            _own_resources_only(request, party, resources)
        audience = resources or [party.uri if party is not None else client.client_id]
        exp = now + int(request.expires_in)
    parties += audience
    claims: dict[str, Any] = {
        "iss": idp_settings.ISSUER,
        "sub": sub,
        "aud": audience[0] if len(audience) == 1 else audience,
        "exp": exp,
        "iat": now,
        "jti": new_jti(),
        "client_id": client.client_id,
        "scope": scope,
    }
    if exchange is not None:
        claims["act"] = exchange.act
    return claims, parties


def generate_access_token(request: Request) -> str:
    """The ``ACCESS_TOKEN_GENERATOR``: a signed ``at+jwt``, or an opaque token for
    applications that keep django-oauth-toolkit's format."""
    if not jwt_enabled_for(request.client):
        return random_token_generator(request)
    claims, parties = build_claims(request, int(time.time()))
    key = keyset.signing_key()
    token = jose.sign(claims, key)
    request.delegation_issued = Issued(claims=claims, kid=key.kid, parties=parties)
    record = audit.current()
    if record is not None:
        record.jti = claims["jti"]
        record.subject = claims["sub"]
        record.granted_scope = claims["scope"]
        record.granted_audience = list(jose.audiences(claims))
    return token
