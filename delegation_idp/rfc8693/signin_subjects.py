"""The other subjects of an ID-JAG request (draft-ietf-oauth-identity-assertion-authz-grant
section 4.3): an OpenID Connect ID token or a refresh token that django-oauth-toolkit issued
to the requesting client when a user signed in to it.

Either one leads to the lineage row of the access token issued with it (django-oauth-toolkit's
``AccessToken.id_token``, ``RefreshToken.access_token``): the user's root token. The ID-JAG is
then decided as one from that access token (its user, its scope, no actor: the requester is the
first) and recorded as its child, so revoking the root token, the agent or the user stops new
ID-JAGs from the ID token and the refresh token too.

* An ID token: its signature by one of the site's OpenID Connect keys (django-oauth-toolkit's
  ``OIDC_RSA_PRIVATE_KEY`` and ``OIDC_RSA_PRIVATE_KEYS_INACTIVE``, public parts), chosen by
  ``kid``, the RFC 7638 thumbprint django-oauth-toolkit names them by; RS256 only (an HS256 ID
  token is keyed with a client secret, which the client knows: refused); sizes checked before
  anything is parsed (:mod:`delegation_idp.jose`). Then ``iss`` (the provider's ``ISSUER``, as
  :func:`id_token_issuer` says), ``exp``, ``aud`` naming the authenticated client, and the ``IDToken``
  row of its ``jti``: unexpired, of the client's application, with an active user.
* A refresh token: its ``RefreshToken`` row (by ``token_checksum``, the SHA-256 that
  django-oauth-toolkit stores and looks it up by, whether or not it also stores the value), of
  the client's application, not revoked, not past ``REFRESH_TOKEN_EXPIRE_SECONDS``, with an
  active user. Its value is never logged.

Then the root lineage row: present, unrevoked, unexpired (the ID-JAG is its child, and a child
is issued only under a live parent), of the same client and user, with no actor. A root bound to
a DPoP key (RFC 9449) binds its ID token and refresh token too: the request proves that key, as
it would to exchange the root token itself.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_id_token_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)
from oauth2_provider.settings import oauth2_settings

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import InvalidRequest
from delegation_idp.core.reasons import Reason
from delegation_idp.lineage.issuance import subject_record
from delegation_idp.models import TokenLineage
from delegation_idp.rfc8693.request import ID_TOKEN_TYPE, REFRESH_TOKEN_TYPE

__all__ = ["id_token_issuer", "oidc_keys", "verify_signin_subject"]

#: the one algorithm an ID token subject may be signed with (django-oauth-toolkit's RS256 keys)
ID_TOKEN_ALGORITHMS = ("RS256",)
# The claims an ID token has (OpenID Connect Core section 2; django-oauth-toolkit adds jti).
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")


def oidc_keys() -> dict[str, jose.SigningKey]:
    """The site's OpenID Connect verification keys by ``kid``: the public parts of
    django-oauth-toolkit's current and inactive RSA keys; empty when it has none."""
    current = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    if not current:
        return {}
    pems = (current, *oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE)
    try:
        return jose.rsa_verification_keys(tuple(pems))
    except jose.JoseError as exc:
        raise ImproperlyConfigured("OIDC_RSA_PRIVATE_KEY(S_INACTIVE) hold a key that is not RSA") from exc


def id_token_issuer() -> str:
    """The ``iss`` of this site's ID tokens, which django-oauth-toolkit writes through the
    validator's ``get_oidc_issuer_endpoint`` (:class:`delegation_idp.provider.validators.
    DelegationValidator`): ``OIDC_ISS_ENDPOINT`` when set (check ``delegation_idp.E018`` keeps
    it equal to ``ISSUER``), the provider's ``ISSUER`` otherwise."""
    return str(oauth2_settings.OIDC_ISS_ENDPOINT or idp_settings.ISSUER)


def verify_signin_subject(
    token_type: str, token: str, client: Any, now: float
) -> tuple[dict[str, Any], TokenLineage]:
    """An ID token or refresh token subject of ``client``'s: the claims it stands for (those of
    the root access token: ``sub``, ``client_id``, ``scope``, ``exp``, ``cnf`` when it is bound
    to a key, no ``act``) and that
    token's lineage row, with its user and the policy version; or the catalogue's refusal."""
    expires: int | None = None
    if token_type == ID_TOKEN_TYPE:
        access_token_pk, user_pk, expires = _id_token(token, client, now)
    elif token_type == REFRESH_TOKEN_TYPE:
        access_token_pk, user_pk = _refresh_token(token, client)
    else:  # the request parser admits no other type here
        raise InvalidRequest(Reason.UNSUPPORTED_TOKEN_TYPE)
    parent = _root(access_token_pk, client.client_id, user_pk, now)
    exp = int(parent.expires_at.timestamp())
    claims: dict[str, Any] = {
        "iss": idp_settings.ISSUER,
        "sub": parent.subject,
        "aud": list(parent.audience),
        "client_id": parent.client_id,
        "scope": parent.scope,
        "exp": min(exp, expires) if expires is not None else exp,
        "jti": parent.jti,
    }
    if parent.jkt:
        # A root token bound to a key (RFC 9449): its ID token and refresh token stand for it,
        # so the same proof of that key is required as for the root token itself.
        claims["cnf"] = {"jkt": parent.jkt}
    return claims, parent


def _id_token(token: str, client: Any, now: float) -> tuple[Any, Any, int]:
    """The ID token's access token (primary key), user (primary key) and ``exp``."""
    keys = oidc_keys()
    try:
        _header, claims = jose.verify(
            token,
            keys.get,
            algorithms=ID_TOKEN_ALGORITHMS,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            max_json_depth=idp_settings.MAX_JSON_DEPTH,
            expected_typ="jwt",  # django-oauth-toolkit's header: {"typ": "JWT", "alg", "kid"}
        )
        jose.validate_claims(
            claims,
            issuer=id_token_issuer(),
            now=now,
            leeway=idp_settings.CLOCK_SKEW_SECONDS,
            required=ID_TOKEN_CLAIMS,
        )
    except jose.JoseError as exc:
        raise InvalidRequest(Reason.for_token_error("subject", exc.reason)) from exc
    if client.client_id not in jose.audiences(claims):
        # Section 4.3: the ID token's audience is the client_id of the authenticated client.
        raise InvalidRequest(Reason.SUBJECT_WRONG_AUDIENCE)
    row = (
        get_id_token_model()
        .objects.filter(jti=_uuid(claims["jti"]), application_id=client.pk)
        .values_list("pk", "user_id", "expires")
        .first()
    )
    if row is None:
        raise InvalidRequest(Reason.SUBJECT_UNKNOWN)  # not ours, or another client's
    id_token_pk, user_pk, expires = row
    if expires is None or expires <= timezone.now():
        raise InvalidRequest(Reason.SUBJECT_EXPIRED)
    access_token_pk = (
        get_access_token_model().objects.filter(id_token_id=id_token_pk).values_list("pk", flat=True).first()
    )
    if access_token_pk is None:
        # Its access token was revoked (revocation deletes the row) or never stored.
        raise InvalidRequest(Reason.SUBJECT_REVOKED)
    return access_token_pk, user_pk, int(claims["exp"])


def _refresh_token(token: str, client: Any) -> tuple[Any, Any]:
    """The refresh token's access token (primary key) and user (primary key)."""
    if len(token) > idp_settings.MAX_TOKEN_BYTES:
        raise InvalidRequest(Reason.SUBJECT_TOO_LARGE)
    checksum = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    row = (
        get_refresh_token_model()
        .objects.filter(token_checksum=checksum, application_id=client.pk)
        # Several rows may share a checksum once revoked: the unrevoked one first.
        .order_by(F("revoked").desc(nulls_first=True))
        .values_list("user_id", "access_token_id", "access_token__expires", "revoked")
        .first()
    )
    if row is None:
        raise InvalidRequest(Reason.SUBJECT_UNKNOWN)  # not ours, or another client's
    user_pk, access_token_pk, access_expires, revoked = row
    if revoked is not None:
        # Revoked, or rotated (a refresh revokes the token it replaces): never a subject again.
        raise InvalidRequest(Reason.SUBJECT_REVOKED)
    if access_token_pk is None:
        raise InvalidRequest(Reason.SUBJECT_REVOKED)  # its access token was revoked
    lifetime = refresh_token_expire_timedelta()
    if lifetime and access_expires + lifetime <= timezone.now():
        raise InvalidRequest(Reason.SUBJECT_EXPIRED)  # django-oauth-toolkit's own limit
    return access_token_pk, user_pk


def _root(access_token_pk: Any, client_id: str, user_pk: Any, now: float) -> TokenLineage:
    """The lineage row of the access token issued with the subject, live and with an active
    user, read as an access-token subject's is (with its user and the policy version)."""
    jti = (
        TokenLineage.objects.filter(access_token_id=access_token_pk).values_list("jti", flat=True).first()
        if access_token_pk is not None  # (revoked rows have none: never match one of them)
        else None
    )
    parent = subject_record(jti) if jti is not None else None
    if parent is None:
        raise InvalidRequest(Reason.SUBJECT_UNKNOWN)  # an opaque access token has no lineage row
    if parent.client_id != client_id or parent.user_id != user_pk or parent.act:
        # Not the row of a sign-in of this user at this client: never a stand-in for it.
        raise InvalidRequest(Reason.SUBJECT_LINEAGE_MISMATCH)
    if parent.revoked_at is not None:
        raise InvalidRequest(Reason.SUBJECT_REVOKED)
    if parent.expires_at <= datetime.fromtimestamp(now, tz=UTC):
        # The ID-JAG would be its child, and a child is issued under a live parent only: the
        # client refreshes (or signs the user in again) first.
        raise InvalidRequest(Reason.SUBJECT_EXPIRED)
    if parent.user is None or not parent.user.is_active:
        raise InvalidRequest(Reason.SUBJECT_USER_INACTIVE)
    return parent


def _uuid(value: Any) -> str:
    """An ID token's ``jti``, which django-oauth-toolkit makes a UUID; refused otherwise."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise InvalidRequest(Reason.SUBJECT_MALFORMED) from exc
