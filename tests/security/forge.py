"""Hostile tokens, built by hand: raw base64url segments, signatures computed with
``cryptography`` directly, so a test can sign bytes that jwcrypto would refuse to produce."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from delegation_idp import jose
from delegation_idp.provider.keys import keyset
from tests.helpers import decode


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    """A JSON object (or raw bytes/str kept verbatim) as a base64url segment."""
    if isinstance(value, (bytes, str)):
        return b64(value)
    return b64(json.dumps(value, separators=(",", ":")))


def es256_der(signing_input: bytes, key: jose.SigningKey) -> bytes:
    private = key.jwk.get_op_key("sign")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private.sign(signing_input, ec.ECDSA(hashes.SHA256()))


def es256_raw(signing_input: bytes, key: jose.SigningKey) -> bytes:
    """The JWS form of an ES256 signature: r || s, 32 bytes each (RFC 7518 section 3.4)."""
    r, s = decode_dss_signature(es256_der(signing_input, key))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def own_key() -> jose.SigningKey:
    return keyset.signing_key()


def sign_raw(header: Any, payload: Any, key: jose.SigningKey | None = None, *, der: bool = False) -> str:
    """A compact JWS over verbatim header/payload, signed by ``key`` (default: our own)."""
    key = key or own_key()
    signing_input = f"{segment(header)}.{segment(payload)}"
    sign = es256_der if der else es256_raw
    return f"{signing_input}.{b64(sign(signing_input.encode(), key))}"


def own_header(**changes: Any) -> dict[str, Any]:
    key = own_key()
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def claims_of(token: str, **changes: Any) -> dict[str, Any]:
    claims = decode(token)[1]
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def resign(token: str, *, header: dict[str, Any] | None = None, **changes: Any) -> str:
    """The token's claims with ``changes`` (None removes), validly signed by our own key."""
    return sign_raw(header or own_header(), claims_of(token, **changes))


def hs256(token: str, secret: bytes, alg: str = "HS256") -> str:
    """Algorithm confusion: HMAC keyed with public key material (CVE-2015-9235, CVE-2022-29217)."""
    header = {"alg": alg, "kid": own_key().kid, "typ": "at+jwt"}
    signing_input = f"{segment(header)}.{segment(claims_of(token))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def public_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization

    public = own_key().jwk.get_op_key("verify")
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def nested_act(depth: int, actor: str = "https://agent1.example.com") -> dict[str, Any]:
    """An ``act`` claim nested ``depth`` levels, built without recursion."""
    act: dict[str, Any] = {"sub": actor}
    for _ in range(depth - 1):
        act = {"sub": actor, "act": act}
    return act


def deep_act_json(depth: int, actor: str = "https://agent1.example.com") -> str:
    """The same, as JSON text: ``json.dumps`` would recurse past Python's limit."""
    return f'{{"sub":"{actor}","act":' * (depth - 1) + f'{{"sub":"{actor}"}}' + "}" * (depth - 1)


def foreign_key() -> jose.SigningKey:
    return jose.generate_key("ES256")


def now() -> int:
    return int(time.time())


def issued(token: str, **changes: Any) -> str:
    """``token`` re-signed with ``changes`` under a fresh ``jti``, *and recorded* in the
    lineage as if the provider had issued it: a token whose only unusual part is its
    content (a chain or scope the policy must judge), not its provenance.

    A re-signed token without a lineage row of its own is refused earlier, as
    ``subject_lineage_mismatch``; the policy cases need tokens that get past that.
    """
    import secrets
    from datetime import UTC, datetime

    from delegation_idp.models import TokenLineage

    original = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
    jti = secrets.token_urlsafe(16)
    forged = sign_raw(own_header(), claims_of(token, jti=jti, **changes))
    claims = decode(forged)[1]
    act = claims.get("act")
    depth = 0
    node = act
    while isinstance(node, dict):
        depth, node = depth + 1, node.get("act")
    TokenLineage.objects.create(
        jti=jti,
        root_jti=jti,
        path=jti,
        depth=depth,
        grant_type="test",
        user=original.user,
        subject=claims["sub"],
        client_id=claims["client_id"],
        audience=[claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"],
        scope=claims.get("scope", ""),
        act=act,
        kid=own_key().kid,
        issued_at=datetime.fromtimestamp(claims["iat"], tz=UTC),
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
    )
    return forged
