"""The ID-JAG's constants and claims (draft-ietf-oauth-identity-assertion-authz-grant,
sections 3 and 4.3): pure, the standard library only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from delegation_idp.core.reasons import Reason

__all__ = [
    "AUTHORIZATION_SERVER",
    "GRANT_PROFILE",
    "TOKEN_TYPE",
    "TYP",
    "asserted_resources",
    "assertion_refusal",
    "granted_scope",
    "issued_claims",
    "redeemed_resources",
    "target_refusal",
]

#: The token type an RFC 8693 request asks for, and the response's ``issued_token_type``.
TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
#: The JWS ``typ`` header of every ID-JAG (explicit typing, RFC 8725 section 3.11).
TYP = "oauth-id-jag+jwt"
#: What a resource authorization server lists in ``authorization_grant_profiles_supported``.
GRANT_PROFILE = "urn:ietf:params:oauth:grant-profile:id-jag"
#: The kind of registered party an ID-JAG is addressed to: an external authorization
#: server, known by its issuer identifier (``Party.AUTHORIZATION_SERVER``).
AUTHORIZATION_SERVER = "authorization_server"


def target_refusal(
    *, id_jag: bool, audiences: Sequence[str], targets: Sequence[str], kinds: Mapping[str, str]
) -> Reason | None:
    """Whether an exchange the delegation policy allowed may be issued as asked, from the
    request's ``audience`` values, its targets (audiences, then each resource's owner) and
    the kind of each target:

    * an ID-JAG is addressed to one external authorization server, its ``audience``
      (``ID_JAG_NOT_AN_AUTHORIZATION_SERVER``), and every ``resource`` must be one of that
      server's (``ID_JAG_RESOURCE_ELSEWHERE``): the ID-JAG names one trust domain;
    * an access token is never addressed to an external authorization server
      (``ID_JAG_ONLY_TARGET``): such a server is reached with an ID-JAG, which it redeems,
      never with a token it might mistake for one of its own.
    """
    if not id_jag:
        if any(kinds.get(t) == AUTHORIZATION_SERVER for t in targets):
            return Reason.ID_JAG_ONLY_TARGET
        return None
    if len(audiences) != 1 or kinds.get(audiences[0]) != AUTHORIZATION_SERVER:
        return Reason.ID_JAG_NOT_AN_AUTHORIZATION_SERVER
    if any(t != audiences[0] for t in targets):
        return Reason.ID_JAG_RESOURCE_ELSEWHERE
    return None


def issued_claims(
    *,
    issuer: str,
    sub: str,
    audience: str,
    client_id: str,
    jti: str,
    iat: int,
    exp: int,
    resources: Sequence[str] = (),
    scope: str = "",
    act: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims of an ID-JAG (section 3): ``iss``, ``sub``, ``aud`` (the resource
    authorization server's issuer, one string), ``client_id`` (the client's identifier at
    that server), ``jti``, ``iat``, ``exp``; ``resource`` (a string for one, a list for
    several) and ``scope`` when there are any; and the RFC 8693 ``act`` chain of a delegated
    subject, so that the resource authorization server can carry it on."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "client_id": client_id,
        "jti": jti,
        "iat": iat,
        "exp": exp,
    }
    if resources:
        claims["resource"] = resources[0] if len(resources) == 1 else list(resources)
    if scope:
        claims["scope"] = scope
    if act is not None:
        claims["act"] = dict(act)
    return claims


def assertion_refusal(claims: Mapping[str, Any], *, issuer: str, client_id: str) -> Reason | None:
    """The draft's checks of a presented ID-JAG whose signature, ``iss``, ``exp``, ``iat`` and
    ``nbf`` the JOSE layer already verified (section 5.1, RFC 7523 section 3): ``aud`` is this
    server's issuer and nothing else, ``client_id`` the authenticated client, ``jti`` present,
    and ``resource`` and ``scope`` well formed."""
    aud = claims.get("aud")
    if aud != issuer and aud != [issuer]:
        return Reason.ID_JAG_BAD_AUD
    if not isinstance(claims.get("client_id"), str):
        return Reason.ID_JAG_MISSING_CLAIM
    if claims["client_id"] != client_id:
        return Reason.ID_JAG_CLIENT_MISMATCH
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        return Reason.ID_JAG_MISSING_CLAIM
    resource = claims.get("resource")
    if resource is not None and not (
        isinstance(resource, str)
        or (isinstance(resource, list) and all(isinstance(r, str) for r in resource))
    ):
        return Reason.ID_JAG_MALFORMED
    if "scope" in claims and not isinstance(claims["scope"], str):
        return Reason.ID_JAG_MALFORMED
    return None


def asserted_resources(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The ID-JAG's ``resource`` values (a string or a list, already checked)."""
    resource = claims.get("resource")
    if resource is None:
        return ()
    return (resource,) if isinstance(resource, str) else tuple(resource)


def redeemed_resources(claims: Mapping[str, Any], requested: Sequence[str]) -> tuple[str, ...] | Reason:
    """The resources the access token is bound to: those requested, each one the ID-JAG names
    (``ID_JAG_RESOURCE_MISMATCH`` otherwise), or without a request all the ID-JAG names; one of
    the two must name some (``ID_JAG_NO_RESOURCE``)."""
    asserted = asserted_resources(claims)
    if requested:
        if not set(requested) <= set(asserted):
            return Reason.ID_JAG_RESOURCE_MISMATCH
        return tuple(dict.fromkeys(requested))
    return asserted or Reason.ID_JAG_NO_RESOURCE


def granted_scope(requested: str | None, asserted: str | None) -> frozenset[str] | Reason:
    """The intersection of the requested and the asserted scopes (all the asserted ones when
    none is requested); ``ID_JAG_SCOPE_EMPTY`` when a request keeps none of them."""
    grant = frozenset((asserted or "").split())
    if requested is None:
        return grant
    kept = grant & frozenset(requested.split())
    return kept if kept else Reason.ID_JAG_SCOPE_EMPTY
