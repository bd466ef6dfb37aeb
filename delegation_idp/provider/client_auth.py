"""Fast, secure client authentication for registered agents.

Two methods, both checked by :class:`delegation_idp.provider.validators.DelegationValidator`:

* **Keyed-hash client secrets.** The secrets this app generates for agents are
  256 bits of randomness, so they need no slow password hashing (PBKDF2 with a
  million iterations exists to slow down guessing of *human* passwords). They
  are stored as ``delegation-hmac-sha256$<key id>$<HMAC-SHA256(key, secret)>``
  with the key from ``DELEGATION_IDP["CLIENT_SECRET_HMAC_KEY"]``, which is not
  in the database: a database dump alone reveals nothing that authenticates,
  and a check costs microseconds. django-oauth-toolkit's
  ``hash_client_secret`` is off for these rows so it leaves the value alone.
  Applications that are not agents keep django-oauth-toolkit's behaviour.

* **private_key_jwt** (RFC 7523 section 2.2 and 3; OpenID Connect Core
  section 9): the agent signs a short-lived JWT with a key whose public half is
  in its party's ``jwks``. The assertion's ``iss`` and ``sub`` are the client
  id, ``aud`` is this provider's issuer or token endpoint URL, and its ``jti``
  is accepted once (a row of :class:`~delegation_idp.models.ClientAssertionJti`,
  unique per client, kept until the assertion expires).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.models import ClientAssertionJti

__all__ = [
    "ASSERTION_TYPE",
    "HMAC_PREFIX",
    "AssertionRefused",
    "check_assertion_claims",
    "hash_secret",
    "is_keyed_hash",
    "purge_used_assertions",
    "store_secret",
    "verify_client_assertion",
    "verify_secret",
]

HMAC_PREFIX = "delegation-hmac-sha256"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# A keyed hash is only as strong as the secret: only generated, high-entropy
# secrets (at least 32 characters, e.g. token_urlsafe(32)) are stored this way.
MIN_SECRET_LENGTH = 32
MIN_KEY_BYTES = 32
# Header typ values accepted on an assertion; an access token (at+jwt) is never one.
ASSERTION_TYPS = frozenset({None, "jwt", "client-authentication+jwt"})


# -- keyed-hash client secrets ---------------------------------------------------


def parse_basic(header: str) -> tuple[str, str] | bool | None:
    """``(client_id, secret)`` from an HTTP Basic ``Authorization`` header (RFC 6749
    section 2.3.1: both form-encoded; RFC 9110: the scheme is case-insensitive).
    None if the header is absent or another scheme, False if it is Basic but undecodable."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    if ":" not in decoded:
        return False
    client_id, secret = (unquote_plus(part) for part in decoded.split(":", 1))
    if "\0" in client_id or "\0" in secret:
        return False
    return client_id, secret


def _hmac_key() -> bytes | None:
    configured = idp_settings.CLIENT_SECRET_HMAC_KEY
    if not configured:
        return None
    key = configured.encode("utf-8") if isinstance(configured, str) else bytes(configured)
    if len(key) < MIN_KEY_BYTES:
        raise ImproperlyConfigured(f"CLIENT_SECRET_HMAC_KEY must be at least {MIN_KEY_BYTES} bytes.")
    return key


def _key_id(key: bytes) -> str:
    """A short fingerprint of the key, so a row hashed under another key is recognised as such."""
    return hashlib.sha256(b"delegation_idp client secret key\x00" + key).hexdigest()[:8]


def _digest(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def keyed_hashing_enabled() -> bool:
    return _hmac_key() is not None


def hash_secret(secret: str) -> str:
    """The stored form of a generated client secret."""
    key = _hmac_key()
    if key is None:
        raise ImproperlyConfigured("CLIENT_SECRET_HMAC_KEY is not set.")
    return f"{HMAC_PREFIX}${_key_id(key)}${_digest(key, secret)}"


def is_keyed_hash(stored: str | None) -> bool:
    return isinstance(stored, str) and stored.startswith(HMAC_PREFIX + "$")


def verify_secret(provided: str, stored: str) -> bool:
    """Constant-time check of ``provided`` against a stored keyed hash.

    False (never an exception) when the key is missing or is not the one the
    row was hashed with: the client then cannot authenticate until it is
    given a new secret, which is the safe failure.
    """
    if not is_keyed_hash(stored) or not isinstance(provided, str):
        return False
    try:
        _prefix, key_id, digest = stored.split("$")
    except ValueError:
        return False
    key = _hmac_key()
    if key is None or not hmac.compare_digest(key_id, _key_id(key)):
        return False
    return hmac.compare_digest(digest, _digest(key, provided))


def may_store_keyed(secret: str) -> bool:
    return keyed_hashing_enabled() and isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH


def store_secret(application: Any, secret: str) -> None:
    """Set ``application``'s secret to the keyed hash of ``secret`` (not saved).

    Without ``CLIENT_SECRET_HMAC_KEY``, or for a short secret, the application
    keeps django-oauth-toolkit's password hashing.
    """
    # HS256 ID tokens are signed with the plain client secret: those keep DOT's handling.
    if may_store_keyed(secret) and getattr(application, "algorithm", "") != "HS256":
        application.client_secret = hash_secret(secret)
        application.hash_client_secret = False
    else:
        application.client_secret = secret
        application.hash_client_secret = True


# -- private_key_jwt (RFC 7523) ------------------------------------------------------


class AssertionRefused(Exception):
    """A client assertion that does not authenticate. ``reason`` is a stable code."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def accepted_audiences() -> frozenset[str]:
    """RFC 7523 section 3 item 3: the issuer identifier, or the token endpoint URL."""
    issuer = str(idp_settings.ISSUER).rstrip("/")
    return frozenset({issuer, issuer + "/", issuer + reverse("oauth2_provider:token")})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class AssertionClaims:
    client_id: str
    jti: str
    expires_at: float


def check_assertion_claims(
    claims: Mapping[str, Any],
    *,
    client_id: str,
    audiences: frozenset[str],
    now: float,
    leeway: float,
    max_lifetime: float,
) -> AssertionClaims:
    """RFC 7523 section 3, pure: who signed it, for whom, and for how long.

    ``aud`` must be one of ``audiences`` (a string, or an array of which every
    member is one of them: an assertion made out to another server too is
    refused, so it cannot be replayed here). ``exp`` is required and at most
    ``max_lifetime`` ahead, which also bounds how long a ``jti`` is remembered.
    """
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRefused("wrong_issuer")
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not values or not all(isinstance(a, str) for a in values):
        raise AssertionRefused("bad_audience")
    if not all(a in audiences for a in values):
        raise AssertionRefused("bad_audience")
    exp = _number(claims.get("exp"))
    if exp is None:
        raise AssertionRefused("missing_exp")
    if exp + leeway <= now:
        raise AssertionRefused("expired")
    if exp - now > max_lifetime + leeway:
        raise AssertionRefused("lifetime_too_long")
    for name in ("iat", "nbf"):
        if name in claims:
            value = _number(claims[name])
            if value is None or value - leeway > now:
                raise AssertionRefused("not_yet_valid")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise AssertionRefused("bad_jti")
    return AssertionClaims(client_id=client_id, jti=jti, expires_at=exp + leeway)


def _alg_for(jwk_data: Mapping[str, Any]) -> str | None:
    """The algorithm of a client's public key: its ``alg``, or implied by its curve."""
    alg = jwk_data.get("alg")
    if isinstance(alg, str):
        return alg
    kty, crv = str(jwk_data.get("kty")), str(jwk_data.get("crv"))
    return {("EC", "P-256"): "ES256", ("EC", "P-384"): "ES384", ("OKP", "Ed25519"): "EdDSA"}.get((kty, crv))


def client_key(jwks: Any, kid: str) -> jose.SigningKey | None:
    """The public key named ``kid`` in a party's JWK set, or None. Private members are ignored."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        return None
    for data in keys:
        if not isinstance(data, Mapping) or data.get("kid") != kid:
            continue
        if data.get("use") not in (None, "sig"):
            return None
        alg = _alg_for(data)
        if alg not in jose.ASYMMETRIC_ALGORITHMS:
            return None
        try:
            return jose.public_key({**data, "alg": alg})
        except Exception:
            return None
    return None


def unverified_client_id(assertion: str) -> str | None:
    """``sub`` of an assertion before it is verified: only to find whose keys verify it."""
    try:
        claims = jose.unverified_claims(
            assertion, max_bytes=idp_settings.MAX_TOKEN_BYTES, max_json_depth=idp_settings.MAX_JSON_DEPTH
        )
    except jose.JoseError:
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 255 or not sub.isprintable():
        return None  # no client id holds a control character (nor may one reach the database)
    return sub


def verify_client_assertion(assertion: str, client_id: str, jwks: Any, now: float | None = None) -> None:
    """Verify ``assertion`` for ``client_id`` against the party's ``jwks`` and spend its ``jti``.

    Raises :class:`AssertionRefused`; returns nothing when the client is authenticated.
    """
    now = time.time() if now is None else now
    try:
        header = jose.peek_header(
            assertion,
            algorithms=idp_settings.ALLOWED_ALGORITHMS,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            expected_typ=None,
        )
        typ = header.get("typ")
        if (typ.lower().removeprefix("application/") if isinstance(typ, str) else None) not in ASSERTION_TYPS:
            raise AssertionRefused("bad_typ")
        key = client_key(jwks, header["kid"])
        _header, claims = jose.verify(
            assertion,
            lambda kid: key if key is not None and kid == key.kid else None,
            algorithms=idp_settings.ALLOWED_ALGORITHMS,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            max_json_depth=idp_settings.MAX_JSON_DEPTH,
            expected_typ=None,
        )
    except jose.JoseError as exc:
        raise AssertionRefused(exc.reason) from exc
    checked = check_assertion_claims(
        claims,
        client_id=client_id,
        audiences=accepted_audiences(),
        now=now,
        leeway=idp_settings.CLOCK_SKEW_SECONDS,
        max_lifetime=idp_settings.CLIENT_ASSERTION_MAX_LIFETIME,
    )
    spend_jti(checked)


def spend_jti(checked: AssertionClaims) -> None:
    """Record the assertion's ``jti``; a second use is refused (the unique constraint decides)."""
    try:
        with transaction.atomic():
            ClientAssertionJti.objects.create(
                client_id=checked.client_id,
                jti=checked.jti,
                expires_at=datetime.fromtimestamp(checked.expires_at, tz=UTC),
            )
    except IntegrityError as exc:
        raise AssertionRefused("replayed") from exc


def purge_used_assertions(now: datetime | None = None) -> int:
    """Forget the ``jti`` of assertions that have expired (they can no longer be replayed)."""
    deleted, _ = ClientAssertionJti.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return int(deleted)
