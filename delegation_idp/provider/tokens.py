"""JWT access tokens (RFC 9068) for every grant, through django-oauth-toolkit's
``ACCESS_TOKEN_GENERATOR`` hook.

oauthlib calls the generator with its request after the grant has validated
it; the grant leaves an :class:`Exchange` on the request when the token is a
delegated one. The claims that were signed are left on the request as
``request.delegation_issued`` so the validator records the token's lineage in
the same transaction that stores it.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.tokens import random_token_generator

from delegation_idp import audit, client_subject, is_client_subject, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core.policy import resource_under
from delegation_idp.models import party_of
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.policy_store import current as current_policy

__all__ = ["Exchange", "Issued", "default_subject", "email_subject", "generate_access_token"]

logger = logging.getLogger(__name__)


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


def _refuse(request: Request, error: str, reason: str, description: str) -> Exception:
    """An OAuth error raised while the token is built (django-oauth-toolkit's backend turns
    it into the JSON answer; nothing is stored), its reason code on the audit record."""
    from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

    record = audit.current()
    if record is not None:
        record.reason = reason
    return CustomOAuth2Error(error=error, description=description, request=request)


def _only_under(request: Request, prefixes: Any, resources: list[str], reason: str, description: str) -> None:
    """``invalid_target`` (RFC 8707 section 2) unless every resource is under one of ``prefixes``."""
    for resource in resources:
        if not any(resource_under(resource, prefix) for prefix in prefixes):
            raise _refuse(request, "invalid_target", reason, description)


def checked_resources(request: Request, client: Any, party: Any) -> list[str]:
    """Every value of a repeated RFC 8707 ``resource`` (oauthlib keeps only the last), each
    one checked. Opaque tokens carry them too (django-oauth-toolkit stores them as the
    token's audience), so both formats are checked.

    * An agent's own tokens (authorization code, refresh, client credentials) are addressed
      to the agent itself: any other audience is reached only by token exchange, through a
      delegation rule, with the agent recorded in ``act``.
    * An application that is not a registered party may address its tokens only to the
      enabled parties whose *clients* list names it (``Party.clients``). The allow-list is
      policy: it comes from the per-process policy cache, whose version triggers cover its
      link table.
    """
    resources = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
    if party is not None:
        _only_under(
            request,
            (party.uri, *party.prefixes()),
            resources,
            "resource_not_own",
            "An agent's own token can only be addressed to the agent; "
            "use token exchange to reach another party.",
        )
    elif resources:
        allowed = [
            prefix
            for uri, prefixes in current_policy().client_audiences(client.pk)
            for prefix in (uri, *prefixes)
        ]
        _only_under(
            request,
            allowed,
            resources,
            "resource_not_allowed",
            "The requested resource is not permitted for this client.",
        )
    return resources


def user_subject(request: Request, user: Any) -> str:
    """``SUBJECT_RESOLVER(user)``, refused when it falls in the namespace reserved for
    clients: a misconfigured resolver must never make a user's token read as a client's."""
    sub = str(idp_settings.SUBJECT_RESOLVER(user))
    if is_client_subject(sub):
        logger.error("SUBJECT_RESOLVER returned a subject in the reserved client namespace; refused")
        raise _refuse(
            request,
            "invalid_grant",
            "subject_reserved",
            "This user's subject identifier is reserved; the token cannot be issued.",
        )
    return sub


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
            sub = user_subject(request, user)
        else:
            # RFC 9068 section 2.2: without a resource owner, sub names the client, in a
            # namespace that no user subject can take.
            sub = client_subject(client.client_id)
        resources = checked_resources(request, client, party)
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
        if getattr(request, "delegation", None) is None:
            checked_resources(request, request.client, party_of(request.client))
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
