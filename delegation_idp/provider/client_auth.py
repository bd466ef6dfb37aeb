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
  unique per client, kept until the assertion expires). The header's ``kid`` is
  optional (RFC 7515 section 4.1.4): without it the one registered key that fits
  the header's ``alg`` verifies. A key registered without ``alg`` verifies the
  header's ``alg`` when the allow-list and the key's type both allow it (RSA:
  RS*/PS*; EC: by curve; Ed25519: EdDSA); a key with ``alg`` verifies that alone.
  :func:`validate_client_jwks` checks a JWK set when it is registered.

Every refusal of an assertion is :class:`AssertionRefused` with a stable code, logged
by the validator; the client is only told ``invalid_client`` (RFC 6749 section 5.2).

Why one module over 400 lines: it is the one place that says how an agent proves who it
is, by both methods; the JWK-set check at registration and the key choice at
authentication apply one rule (:func:`key_algorithms`) and are kept beside each other so
they cannot drift apart.
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
from django.utils.translation import gettext as _

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
    "validate_client_jwks",
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
    refused, so it cannot be replayed here). ``exp`` is required (item 4).

    An assertion is good for at most ``max_lifetime`` seconds, which bounds how long its
    ``jti`` must be remembered (item 7): ``max_lifetime`` after its ``iat`` (item 6 lets a
    server refuse an ``iat`` too far in the past), or, without ``iat``, until an ``exp`` at
    most ``max_lifetime`` ahead (item 4 lets it refuse an ``exp`` too far in the future). So a
    client's longer ``exp`` (Authlib's default is an hour) is accepted, but only while fresh.
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
    for name in ("iat", "nbf"):
        if name in claims:
            value = _number(claims[name])
            if value is None or value - leeway > now:
                raise AssertionRefused("not_yet_valid")
    iat = _number(claims.get("iat"))
    if iat is None:
        if exp - now > max_lifetime + leeway:
            raise AssertionRefused("lifetime_too_long")
        good_until = exp
    else:
        good_until = min(exp, iat + max_lifetime)
        if good_until + leeway <= now:
            raise AssertionRefused("too_old")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise AssertionRefused("bad_jti")
    return AssertionClaims(client_id=client_id, jti=jti, expires_at=good_until + leeway)


# RFC 7518 section 3.1 and RFC 8037 section 3.1: the JWS algorithms each kind of public key
# signs with. Which of them are accepted is the allow-list's say (asymmetric ones only).
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_CURVE_ALGORITHMS = {
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("EC", "P-521"): "ES512",
    ("OKP", "Ed25519"): "EdDSA",
}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MIN_RSA_BITS = 2048  # RFC 7518 section 3.3 (and NIST SP 800-131A): smaller RSA keys are refused
MAX_KID_LENGTH = 128  # what the JOSE layer accepts in a header


def allowed_algorithms() -> frozenset[str]:
    """The algorithms a client may sign assertions with: the allow-list, asymmetric only."""
    return frozenset(idp_settings.ALLOWED_ALGORITHMS) & jose.ASYMMETRIC_ALGORITHMS


def key_type_algorithms(jwk_data: Mapping[str, Any]) -> frozenset[str] | None:
    """The algorithms a public JWK's type and curve sign with, or None for a type that signs
    nothing this server verifies (``oct``, X25519, Ed448, an unknown ``kty`` or ``crv``)."""
    kty = jwk_data.get("kty")
    if kty == "RSA":
        return _RSA_ALGORITHMS
    alg = _CURVE_ALGORITHMS.get((str(kty), str(jwk_data.get("crv"))))
    return frozenset({alg}) if alg else None


def rsa_bits(jwk_data: Mapping[str, Any]) -> int:
    """The modulus size of an RSA JWK in bits (0 when ``n`` is not base64url)."""
    n = jwk_data.get("n")
    if not isinstance(n, str) or len(n) > 2048:  # 12,000 bits: far beyond any real key
        return 0
    try:
        modulus = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(modulus, "big").bit_length()


def key_algorithms(jwk_data: Mapping[str, Any]) -> frozenset[str]:
    """The algorithms assertions verified by this client key may use: its ``alg`` alone when it
    names one, else every algorithm of its type; only allowed ones (RFC 7517 section 4.4 makes
    ``alg`` optional). Empty when the key cannot verify any."""
    kind = key_type_algorithms(jwk_data)
    declared = jwk_data.get("alg")
    if kind is None or (declared is not None and not isinstance(declared, str)):
        return frozenset()
    return (kind if declared is None else kind & {declared}) & allowed_algorithms()


def _key_for(data: Any, alg: str) -> jose.SigningKey | str:
    """The key ``data`` as the verifier of an assertion signed with ``alg``, or why it is not.

    The header's ``alg`` chooses only among what the key's own ``alg`` (or, without one, its
    type and curve) allows: an RSA key never verifies an EC or HMAC signature."""
    if not isinstance(data, Mapping):
        return "unsupported_key"
    if data.get("use") not in (None, "sig"):
        return "key_not_for_signing"
    kind = key_type_algorithms(data)
    if kind is None:
        return "unsupported_key"
    declared = data.get("alg")
    if declared is not None and (not isinstance(declared, str) or declared not in kind):
        return "key_alg_invalid"  # e.g. alg "RS256" on an EC key: the key is misregistered
    if alg not in (kind if declared is None else {declared}):
        return "alg_mismatch"
    if alg not in allowed_algorithms():
        return "bad_alg"  # the header's alg is checked first; kept for a direct caller
    try:
        key = jose.public_key({**data, "alg": alg})  # private members, if any, are dropped
    except Exception:
        return "unloadable_key"
    if data.get("kty") == "RSA" and rsa_bits(data) < MIN_RSA_BITS:
        return "key_too_weak"
    return key


def client_key(jwks: Any, kid: str | None, alg: str) -> jose.SigningKey:
    """The one key of a party's JWK set that verifies an assertion with header ``kid`` and
    ``alg``; raises :class:`AssertionRefused` saying why there is none.

    With a ``kid``, only the key of that ``kid`` is tried. Without one (RFC 7515 section
    4.1.4 makes it optional), the key is the only one that fits ``alg``; with several the
    client must name one (``kid_required``)."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise AssertionRefused("no_keys")
    if kid is not None:
        named = [data for data in keys if isinstance(data, Mapping) and data.get("kid") == kid]
        if not named:
            raise AssertionRefused("unknown_kid")
        if len(named) > 1:
            raise AssertionRefused("duplicate_kid")
        verdicts = [_key_for(named[0], alg)]
    else:
        verdicts = [_key_for(data, alg) for data in keys]
    fitting = [key for key in verdicts if isinstance(key, jose.SigningKey)]
    if len(fitting) == 1:
        return fitting[0]
    if fitting:
        raise AssertionRefused("kid_required")
    if len(verdicts) == 1:
        raise AssertionRefused(str(verdicts[0]))  # the one key's own reason
    raise AssertionRefused("no_matching_key")


def validate_client_jwks(data: Any) -> list[str]:
    """What is wrong with ``data`` as a party's client JWK set (RFC 7517 section 5), as
    messages for whoever registers it; empty when every key can authenticate the client.

    Only public signing keys this server can verify with are accepted: no private or
    symmetric key material, a known ``kty`` and ``crv``, an ``alg`` (when given) on the
    allow-list and of the key's type, RSA of at least 2048 bits, one key per ``kid``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        return [_('A JWK set is a JSON object with a "keys" list: {"keys": [{...}, ...]}.')]
    allowed = ", ".join(sorted(allowed_algorithms()))
    errors: list[str] = []
    seen: set[str] = set()
    for position, key in enumerate(data["keys"], start=1):
        if not isinstance(key, Mapping):
            errors.append(_("Key %(n)d is not a JSON object.") % {"n": position})
            continue
        kid = key.get("kid")
        name = _("Key %(n)d") % {"n": position}
        if isinstance(kid, str) and kid:
            name = _('Key %(n)d (kid "%(kid)s")') % {"n": position, "kid": kid[:MAX_KID_LENGTH]}
        problem = _key_problem(key, allowed)
        if problem:
            errors.append(f"{name}: {problem}")
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH):
            errors.append(
                f"{name}: "
                + _("kid must be a non-empty string of at most %(max)d characters.") % {"max": MAX_KID_LENGTH}
            )
        elif isinstance(kid, str):
            if kid in seen:
                errors.append(f"{name}: " + _("another key has the same kid; each kid names one key."))
            seen.add(kid)
    return errors


def _key_problem(key: Mapping[str, Any], allowed: str) -> str:
    """Why one JWK may not be a client key, or ``""``."""
    kty = key.get("kty")
    if kty == "oct":
        return _("a symmetric (oct) key is a shared secret; register public keys only.")
    private = [member for member in PRIVATE_MEMBERS if member in key]
    if private:
        return _("it holds private key members (%(members)s); register the public key only.") % {
            "members": ", ".join(private)
        }
    kind = key_type_algorithms(key)
    if kind is None:
        if kty not in ("RSA", "EC", "OKP"):
            return _('unknown key type "%(kty)s" (use RSA, EC or OKP).') % {"kty": str(kty)[:20]}
        return _('unsupported curve "%(crv)s" for %(kty)s (use P-256, P-384, P-521 or Ed25519).') % {
            "crv": str(key.get("crv"))[:20],
            "kty": kty,
        }
    if key.get("use") not in (None, "sig"):
        return _('"use" is "%(use)s"; a client key signs ("sig").') % {"use": str(key.get("use"))[:20]}
    declared = key.get("alg")
    if declared is not None and not isinstance(declared, str):
        return _("alg must be a string.")
    if declared is not None and declared not in allowed_algorithms():
        return _('alg "%(alg)s" is not allowed here (allowed: %(allowed)s).') % {
            "alg": str(declared)[:20],
            "allowed": allowed,
        }
    if declared is not None and declared not in kind:
        return _('alg "%(alg)s" does not fit this %(kty)s key (it signs with %(kind)s).') % {
            "alg": declared[:20],
            "kty": kty,
            "kind": ", ".join(sorted(kind)),
        }
    if not key_algorithms(key):
        return _(
            "no allowed algorithm signs with this key (needs one of %(kind)s; allowed: %(allowed)s)."
        ) % {
            "kind": ", ".join(sorted(kind)),
            "allowed": allowed,
        }
    try:
        jose.public_key(key)
    except Exception:
        return _("it is not a valid JWK (its members do not make a key).")
    if kty == "RSA" and rsa_bits(key) < MIN_RSA_BITS:
        return _("an RSA key of %(bits)d bits is too weak; at least %(min)d are required.") % {
            "bits": rsa_bits(key),
            "min": MIN_RSA_BITS,
        }
    return ""


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
    allowed = allowed_algorithms()
    try:
        header = jose.peek_header(
            assertion,
            algorithms=allowed,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            expected_typ=None,
            require_kid=False,
        )
        typ = header.get("typ")
        if (typ.lower().removeprefix("application/") if isinstance(typ, str) else None) not in ASSERTION_TYPS:
            raise AssertionRefused("bad_typ")
        kid = header.get("kid")
        key = client_key(jwks, kid, header["alg"])
        _header, claims = jose.verify(
            assertion,
            lambda presented: key if presented == (kid or "") else None,
            algorithms=allowed,
            max_bytes=idp_settings.MAX_TOKEN_BYTES,
            max_header_bytes=idp_settings.MAX_HEADER_BYTES,
            max_json_depth=idp_settings.MAX_JSON_DEPTH,
            expected_typ=None,
            require_kid=False,
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
