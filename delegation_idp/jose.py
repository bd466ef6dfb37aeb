"""The one module that speaks JOSE (RFC 7515, 7517, 7519, 7638).

Everything else in the package speaks in claims (dicts) and :class:`SigningKey`
objects; jwcrypto stays behind this module. The rules here follow RFC 8725
(JWT best current practice):

* sizes are checked before anything is decoded, and JSON nesting is bounded
  before it is parsed;
* only compact JWS is accepted; headers other than ``alg``, ``kid`` and ``typ``
  (``crit``, ``jku``, ``x5u``, ``jwk``, ``x5c``, ``zip``, ``enc``, ``p2c``...) are refused,
  so no header can name a key, a URL or a compression. The one exception is a DPoP proof
  (RFC 9449), whose ``jwk`` header is the key it proves possession of and is checked as
  such (:func:`verify_proof`): it is never used to verify anything but the proof itself;
* the algorithm comes from the key set, never from the token: the header's
  ``alg`` must equal the algorithm of the key its ``kid`` names, and both must be
  on the allow-list;
* duplicate JSON members are refused.

Signing and verification use jwcrypto's ``JWSCore`` (the signing input, the JWA
algorithm and the key) rather than its ``JWS`` object: this module makes every
check the ``JWS`` object would (and stricter ones: no ``crit``, no ``b64``, one
compact serialization), and a ``JWS`` object deep-copies jwcrypto's header
registry each time one is made, about 0.2 ms per token on the machines this was
measured on. The signing input is rebuilt from the decoded segments, which is
exact because only canonical base64url is accepted.

Why one module over 400 lines: the design keeps every use of jwcrypto and every JOSE rule
behind one module, so that a review of what the package accepts as a JWS (tokens, client
assertions, DPoP proofs) reads one file; splitting it would spread those rules again.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JoseError",
    "SigningKey",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_key",
    "json_depth",
    "load_key",
    "peek_header",
    "rsa_verification_keys",
    "sign",
    "sign_proof",
    "strict_json_loads",
    "thumbprint",
    "token_hash",
    "unverified_claims",
    "verify",
    "verify_proof",
]

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "RS256", "PS256", "EdDSA"})
ALLOWED_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
PROOF_HEADER_MEMBERS = frozenset({"alg", "typ", "jwk"})
# The members a public JWK may carry (RFC 7517 section 4, RFC 7518 section 6, RFC 8037
# section 2); a proof key with any other member (``d``, ``p``, ``k``, ``oth``...) is refused.
_PUBLIC_MEMBERS = {
    "EC": frozenset({"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"}),
    "RSA": frozenset({"kty", "n", "e", "kid", "alg", "use", "key_ops"}),
    "OKP": frozenset({"kty", "crv", "x", "kid", "alg", "use", "key_ops"}),
}
# Which key each asymmetric algorithm signs with: (kty, crv).
_KEY_OF_ALGORITHM = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}
_SIGNATURE_BYTES = {"ES256": 64, "ES384": 96, "EdDSA": 64}
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class JoseError(ValueError):
    """A token or key that this module refuses. ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class SigningKey:
    """A key of the provider's own key set, with the algorithm it is used with."""

    kid: str
    alg: str
    jwk: jwk.JWK

    def public_jwk(self) -> dict[str, Any]:
        """The public members only, with ``kid``, ``alg`` and ``use`` (RFC 7517 section 4)."""
        data = json.loads(self.jwk.export_public())
        data.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return data


def generate_key(alg: str) -> SigningKey:
    """Generate a private key for ``alg``; its ``kid`` is the RFC 7638 thumbprint.

    A key whose thumbprint begins with ``-`` (one in 64) is generated again: operators
    pass kids on the command line (``manage.py revoke_key KID``), where a leading ``-``
    reads as an option."""
    if alg in ("ES256", "ES384"):
        make = functools.partial(jwk.JWK.generate, kty="EC", crv="P-256" if alg == "ES256" else "P-384")
    elif alg in ("RS256", "PS256"):
        make = functools.partial(jwk.JWK.generate, kty="RSA", size=3072)
    elif alg == "EdDSA":
        make = functools.partial(jwk.JWK.generate, kty="OKP", crv="Ed25519")
    else:
        raise JoseError("unsupported_algorithm", f"cannot generate a key for {alg!r}")
    key = make()
    while key.thumbprint().startswith("-"):
        key = make()
    return SigningKey(kid=key.thumbprint(), alg=alg, jwk=key)


def load_key(private_json: bytes | str, alg: str) -> SigningKey:
    key = jwk.JWK.from_json(private_json)
    return SigningKey(kid=key.thumbprint(), alg=alg, jwk=key)


def public_key(data: Mapping[str, Any]) -> SigningKey:
    """A verification key from a published JWK (resource-server side, and client keys).

    Raises when its members do not make a public key, e.g. an EC point off its curve
    (jwcrypto only finds that out when it builds the key, so it is built here)."""
    members = {k: v for k, v in data.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "k")}
    key = jwk.JWK(**members)
    key.get_op_key("verify")
    alg = str(data.get("alg") or "")
    return SigningKey(kid=str(data.get("kid") or key.thumbprint()), alg=alg, jwk=key)


@functools.lru_cache(maxsize=8)
def rsa_verification_keys(pems: tuple[str, ...]) -> dict[str, SigningKey]:
    """RS256 verification keys, by ``kid``, from PEM-encoded RSA keys (private or public):
    public members only, each named by its RFC 7638 thumbprint (django-oauth-toolkit's OIDC
    keys carry that thumbprint as the ``kid`` of the ID tokens they sign). Built once per
    process for each set of PEMs; a PEM that is not an RSA key of 2048 bits or more raises
    :class:`JoseError`."""
    keys: dict[str, SigningKey] = {}
    for pem in pems:
        try:
            loaded = jwk.JWK.from_pem(pem.encode() if isinstance(pem, str) else pem)
        except (JWException, ValueError, TypeError) as exc:
            raise JoseError("bad_key", "not a PEM key") from exc
        if loaded.get("kty") != "RSA":
            raise JoseError("bad_key", "not an RSA key")
        if len(_b64decode(str(loaded.get("n", ""))).lstrip(b"\0")) * 8 < 2048:
            # Its signatures would be refused (RS256 below 2048 bits), so is the key.
            raise JoseError("bad_key", "an RSA key of fewer than 2048 bits")
        public = jwk.JWK(**json.loads(loaded.export_public()))
        keys[public.thumbprint()] = SigningKey(kid=public.thumbprint(), alg="RS256", jwk=public)
    return keys


def _fernet(keys: Iterable[str | bytes]) -> MultiFernet:
    fernets = [Fernet(k) for k in keys]
    if not fernets:
        raise JoseError("no_key_encryption_key", "KEY_ENCRYPTION_KEYS is empty")
    return MultiFernet(fernets)


def encrypt_private_key(key: SigningKey, keks: Iterable[str | bytes]) -> bytes:
    """The private JWK encrypted with the first key-encryption key (Fernet: AES-CBC + HMAC)."""
    return _fernet(keks).encrypt(key.jwk.export_private().encode())


def decrypt_private_key(blob: bytes, alg: str, keks: Iterable[str | bytes]) -> SigningKey:
    try:
        return load_key(_fernet(keks).decrypt(bytes(blob)), alg)
    except InvalidToken as exc:
        raise JoseError("undecryptable_key", "no key-encryption key opens this private key") from exc


def _b64decode(segment: str) -> bytes:
    """Unpadded base64url (RFC 7515 section 2), canonical only: a spelling with the
    unused low bits set (RFC 4648 section 3.5) would let one token take several forms."""
    if not _B64URL.match(segment):
        raise JoseError("malformed", "not base64url")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JoseError("malformed", "not base64url") from exc
    if _b64encode(data) != segment:
        raise JoseError("malformed", "not canonical base64url")
    return data


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JoseError("duplicate_member", "duplicate JSON member")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise JoseError("malformed", "non-standard JSON constant")


def strict_json_loads(data: bytes | str, *, max_depth: int) -> Any:
    """Parse JSON with bounded depth, no duplicate members and no NaN/Infinity."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise JoseError("malformed", "not UTF-8") from exc
    # Nesting needs an opening bracket per level: few brackets cannot nest too deep (counting
    # them is C speed; walking the text is not).
    if text.count("{") + text.count("[") > max_depth and json_depth(text) > max_depth:
        raise JoseError("too_deep", "JSON nested too deeply")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except ValueError as exc:
        if isinstance(exc, JoseError):
            raise
        raise JoseError("malformed", "not JSON") from exc


def _split(token: str, max_bytes: int) -> list[str]:
    if not isinstance(token, str) or not token:
        raise JoseError("malformed", "empty token")
    if len(token) > max_bytes:
        raise JoseError("too_large", "token too large")
    parts = token.split(".")
    if len(parts) != 3:
        # Five parts is a JWE; one part is JSON serialization or garbage.
        raise JoseError("malformed", "not a compact JWS")
    return parts


def peek_header(
    token: str,
    *,
    algorithms: Iterable[str],
    max_bytes: int,
    max_header_bytes: int,
    expected_typ: str | None = "at+jwt",
    require_kid: bool = True,
    members: frozenset[str] = ALLOWED_HEADER_MEMBERS,
) -> dict[str, Any]:
    """Decode and check the protected header of a compact JWS, verifying nothing else.

    ``kid`` is optional in a JWS (RFC 7515 section 4.1.4); with ``require_kid=False`` a header
    may leave it out, but one that is present must still be a non-empty short string."""
    header_segment = _split(token, max_bytes)[0]
    if len(header_segment) > max_header_bytes:
        raise JoseError("too_large", "header too large")
    header = strict_json_loads(_b64decode(header_segment), max_depth=3 if "jwk" in members else 2)
    if not isinstance(header, dict):
        raise JoseError("malformed", "header is not an object")
    extra = set(header) - members
    if extra:
        raise JoseError("forbidden_header", "header member not allowed")
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not isinstance(alg, str) or alg not in set(algorithms) or alg not in ASYMMETRIC_ALGORITHMS:
        raise JoseError("bad_alg", "algorithm not allowed")
    if (kid is not None or require_kid) and (not isinstance(kid, str) or not kid or len(kid) > 128):
        raise JoseError("bad_kid", "missing or invalid kid")
    if expected_typ is not None:
        # RFC 9068 section 2.1 / RFC 8725 section 3.11: explicit typing; the
        # "application/" prefix may be present and the comparison is case-insensitive.
        normalized = typ.lower().removeprefix("application/") if isinstance(typ, str) else None
        if normalized != expected_typ:
            raise JoseError("bad_typ", "unexpected token type")
    return header


def sign(claims: Mapping[str, Any], key: SigningKey, *, typ: str = "at+jwt") -> str:
    """Compact JWS of ``claims`` signed with ``key``; header ``alg``, ``kid``, ``typ``."""
    header = json.dumps({"alg": key.alg, "kid": key.kid, "typ": typ}, separators=(",", ":"))
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signed = jws.JWSCore(key.alg, key.jwk, header, payload, algs=[key.alg]).sign()
    return f"{signed['protected']}.{signed['payload'].decode()}.{signed['signature']}"


def sign_proof(claims: Mapping[str, Any], key: SigningKey, *, typ: str = "dpop+jwt") -> str:
    """Compact JWS of ``claims`` with the public half of ``key`` in its ``jwk`` header (a DPoP
    proof, RFC 9449 section 4.2): header ``typ``, ``alg`` and ``jwk``, no ``kid``."""
    public = json.loads(key.jwk.export_public())
    header = json.dumps({"typ": typ, "alg": key.alg, "jwk": public}, separators=(",", ":"))
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signed = jws.JWSCore(key.alg, key.jwk, header, payload, algs=[key.alg]).sign()
    return f"{signed['protected']}.{signed['payload'].decode()}.{signed['signature']}"


def unverified_claims(token: str, *, max_bytes: int, max_json_depth: int) -> dict[str, Any]:
    """The claims of a compact JWS *without* verifying it, size and depth checked.

    Only to learn whose key must verify it (an RFC 7523 client assertion names
    its client in ``sub``); never trust what this returns.
    """
    payload = strict_json_loads(_b64decode(_split(token, max_bytes)[1]), max_depth=max_json_depth)
    if not isinstance(payload, dict):
        raise JoseError("malformed", "claims are not an object")
    return payload


KeyResolver = Callable[[str], "SigningKey | None"]


def verify(
    token: str,
    resolve_key: KeyResolver,
    *,
    algorithms: Iterable[str],
    max_bytes: int,
    max_header_bytes: int,
    max_json_depth: int,
    expected_typ: str | None = "at+jwt",
    require_kid: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS against a key of our own set and return ``(header, claims)``.

    ``resolve_key`` maps a ``kid`` to a key of the caller's own key set, or None; with
    ``require_kid=False`` a header without ``kid`` is resolved as ``""`` (which no present
    ``kid`` can be). Claims are not validated here (see :func:`validate_claims`).
    """
    allowed = frozenset(algorithms)
    header = peek_header(
        token,
        algorithms=allowed,
        max_bytes=max_bytes,
        max_header_bytes=max_header_bytes,
        expected_typ=expected_typ,
        require_kid=require_kid,
    )
    key = resolve_key(header.get("kid", ""))
    if key is None:
        raise JoseError("unknown_kid", "no key with that kid")
    if key.alg != header["alg"]:
        raise JoseError("bad_alg", "algorithm does not match the key")
    return header, _verified_claims(token, key, max_json_depth=max_json_depth)


def _verified_claims(token: str, key: SigningKey, *, max_json_depth: int) -> dict[str, Any]:
    """The claims of ``token`` once its signature verifies with ``key`` (``key.alg``, which the
    caller has matched with the header)."""
    header_segment, payload_segment, signature_segment = token.split(".")
    expected_len = _SIGNATURE_BYTES.get(key.alg)
    if expected_len is not None and len(signature_segment) != (expected_len * 4 + 2) // 3:
        raise JoseError("bad_signature", "signature has the wrong length")
    signature = _b64decode(signature_segment)
    if expected_len is not None and len(signature) != expected_len:
        raise JoseError("bad_signature", "signature has the wrong length")
    if expected_len is None and key.alg in ("RS256", "PS256") and len(signature) * 8 < 2048:
        raise JoseError("bad_signature", "signature has the wrong length")
    payload = _b64decode(payload_segment)
    try:
        protected = _b64decode(header_segment).decode("utf-8")  # already parsed by peek_header
        jws.JWSCore(key.alg, key.jwk, protected, payload, algs=[key.alg]).verify(signature)
    except (JWException, ValueError, TypeError) as exc:
        raise JoseError("bad_signature", "signature does not verify") from exc
    claims = strict_json_loads(payload, max_depth=max_json_depth)
    if not isinstance(claims, dict):
        raise JoseError("malformed", "claims are not an object")
    return claims


def thumbprint(members: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (its required members only)."""
    try:
        return str(jwk.JWK(**dict(members)).thumbprint())
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise JoseError("bad_key", "not a usable public key") from exc


def token_hash(token: str) -> str:
    """RFC 9449 section 4.2 ``ath``: base64url of the SHA-256 of the token's ASCII octets."""
    return _b64encode(hashlib.sha256(token.encode("ascii", "replace")).digest())


def _proof_key(members: Any, alg: str) -> tuple[jwk.JWK, str]:
    """The public key a DPoP proof's ``jwk`` header carries, checked: an object of public
    members only, of the type and curve ``alg`` signs with, RSA of 2048 bits or more."""
    if not isinstance(members, dict) or not all(
        isinstance(v, str) or (k == "key_ops" and isinstance(v, list) and all(isinstance(o, str) for o in v))
        for k, v in members.items()
    ):
        raise JoseError("bad_key", "jwk is not a JSON object of strings")
    kty = members.get("kty")
    allowed = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if allowed is None:
        raise JoseError("bad_key", "unsupported key type")
    if set(members) - allowed:
        raise JoseError("bad_key", "jwk carries private or unknown members")
    want_kty, want_crv = _KEY_OF_ALGORITHM[alg]
    if kty != want_kty or (want_crv is not None and members.get("crv") != want_crv):
        raise JoseError("bad_alg", "algorithm does not fit the key")
    if members.get("alg") not in (None, alg):
        raise JoseError("bad_alg", "algorithm does not match the key")
    if kty == "RSA":
        # 2048 to 4096 bits, and a public exponent of at most 32 bits (65537 in practice): a
        # long exponent would make every verification a full-length exponentiation.
        modulus = len(_b64decode(str(members.get("n", ""))).lstrip(b"\0")) * 8
        exponent = _b64decode(str(members.get("e", ""))).lstrip(b"\0")
        if not 2048 <= modulus <= 4096 or not 1 <= len(exponent) <= 4:
            raise JoseError("bad_key", "RSA proof keys have 2048 to 4096 bits and a short exponent")
    return _built_key(tuple(sorted((k, v if isinstance(v, str) else tuple(v)) for k, v in members.items())))


@functools.lru_cache(maxsize=1024)
def _built_key(members: tuple[tuple[str, Any], ...]) -> tuple[jwk.JWK, str]:
    """The key and its RFC 7638 thumbprint, built once per process for each public key seen:
    an agent proves with the same key on every request, and building a key costs more than
    verifying with it. Only public, checked members come here (:func:`_proof_key`)."""
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in members}
    try:
        key = jwk.JWK(**data)
        key.get_op_key("verify")  # builds the key: an EC point off its curve fails here
        return key, str(key.thumbprint())
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise JoseError("bad_key", "not a usable public key") from exc


def verify_proof(
    token: str,
    *,
    algorithms: Iterable[str],
    max_bytes: int,
    max_header_bytes: int,
    max_json_depth: int,
    typ: str = "dpop+jwt",
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Verify a proof-of-possession JWS signed by the key in its own ``jwk`` header (RFC 9449
    section 4.3, checks 1 to 7) and return ``(header, claims, thumbprint)``.

    The header holds ``typ`` (exactly ``typ``, no ``application/`` prefix), an asymmetric
    ``alg`` of ``algorithms``, and a public ``jwk`` of that algorithm's key type, nothing
    else. The claims are returned unvalidated: the caller checks ``htm``, ``htu``, ``iat``,
    ``jti``, ``ath`` and ``nonce``."""
    allowed = frozenset(algorithms) & ASYMMETRIC_ALGORITHMS
    header, built, jkt = _proof_header(_split(token, max_bytes)[0], allowed, max_header_bytes, typ)
    claims = _verified_claims(
        token, SigningKey(kid="", alg=header["alg"], jwk=built), max_json_depth=max_json_depth
    )
    return dict(header), claims, jkt


@functools.lru_cache(maxsize=1024)
def _proof_header(
    segment: str, allowed: frozenset[str], max_header_bytes: int, typ: str
) -> tuple[dict[str, Any], jwk.JWK, str]:
    """A proof's protected header (its base64url segment), checked, with the key it carries
    and that key's thumbprint. Remembered per process once it passes: a client's proofs all
    share one header (``typ``, ``alg``, ``jwk``), and decoding and checking it costs about
    as much as verifying the signature. The header returned is shared: not to be changed."""
    header = peek_header(
        f"{segment}..",  # the header segment alone: nothing else of the token is read here
        algorithms=allowed,
        max_bytes=len(segment) + 2,
        max_header_bytes=max_header_bytes,
        expected_typ=None,
        require_kid=False,
        members=PROOF_HEADER_MEMBERS,
    )
    if header.get("typ") != typ:
        raise JoseError("bad_typ", "unexpected token type")
    if "kid" in header:
        raise JoseError("forbidden_header", "header member not allowed")
    built, jkt = _proof_key(header.get("jwk"), header["alg"])
    return header, built, jkt


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None  # 1e400 parses as inf


def validate_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    now: float,
    leeway: float,
    audience: str | None = None,
    required: Iterable[str] = ("iss", "sub", "aud", "exp", "iat", "jti"),
) -> None:
    """Check registered claims (RFC 7519 section 4.1) with an injectable ``now``."""
    for name in required:
        if name not in claims:
            raise JoseError("missing_claim", f"missing claim {name}")
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss != issuer:
        raise JoseError("bad_iss", "foreign issuer")
    for name in ("sub", "jti"):
        if name in claims and (not isinstance(claims[name], str) or not claims[name]):
            raise JoseError("malformed", f"invalid {name}")
    exp = _number(claims.get("exp"))
    if exp is None or exp + leeway <= now:
        raise JoseError("expired", "token expired")
    iat = _number(claims.get("iat"))
    if "iat" in claims and (iat is None or iat - leeway > now):
        raise JoseError("not_yet_valid", "issued in the future")
    if "nbf" in claims:
        nbf = _number(claims.get("nbf"))
        if nbf is None or nbf - leeway > now:
            raise JoseError("not_yet_valid", "token not yet valid")
    if audience is not None and audience not in audiences(claims):
        raise JoseError("bad_aud", "token is not addressed to this party")


def audiences(claims: Mapping[str, Any]) -> list[str]:
    """``aud`` as a list of strings (RFC 7519 section 4.1.3 allows a string or an array)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    return []


def b64url(data: bytes) -> str:
    return _b64encode(data)
