"""DPoP proofs for tests: a client's key that signs proofs the way a client does
(:func:`delegation_idp.jose.sign_proof`), and hostile ones built by hand, raw base64url
segments signed with ``cryptography`` directly, so a test can send what jwcrypto would
refuse to produce (``alg`` ``none``, HMAC, a private ``jwk``, a header naming a key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from delegation_idp import jose


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")))


class Prover:
    """A client's DPoP key pair: its public ``jwk`` and RFC 7638 thumbprint (``jkt``)."""

    def __init__(self, alg: str = "ES256") -> None:
        self.key = jose.generate_key(alg)
        self.jwk = json.loads(self.key.jwk.export_public())
        self.jkt = jose.thumbprint(self.jwk)

    def claims(
        self,
        htm: str,
        htu: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A proof's claims (RFC 9449 section 4.2); ``extra`` adds or, with None, removes one."""
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()) if iat is None else iat,
        }
        if token is not None:
            claims["ath"] = jose.token_hash(token)
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def proof(self, htm: str, htu: str, **options: Any) -> str:
        """A well-formed proof, as a client signs it."""
        return jose.sign_proof(self.claims(htm, htu, **options), self.key)

    def forged(
        self,
        claims: dict[str, Any],
        *,
        signer: Prover | None = None,
        alg: str | None = None,
        **header: Any,
    ) -> str:
        """A proof with this key's ``jwk`` in a header that ``header`` edits (None removes a
        member), signed by ``signer``'s key (default: this one). ``alg`` ``none`` leaves the
        signature empty and ``HS256`` signs with HMAC keyed by the public key's bytes."""
        alg = alg or self.key.alg
        protected = {"typ": "dpop+jwt", "alg": alg, "jwk": self.jwk, **header}
        protected = {k: v for k, v in protected.items() if v is not None}
        signing_input = f"{segment(protected)}.{segment(claims)}"
        if alg == "none":
            return f"{signing_input}."
        if alg == "HS256":
            secret = json.dumps(self.jwk, sort_keys=True).encode()
            return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
        return f"{signing_input}.{b64((signer or self).sign(signing_input.encode()))}"

    def sign(self, data: bytes) -> bytes:
        """A JWS signature over ``data`` with this key (ES256 only: r || s)."""
        private = self.key.jwk.get_op_key("sign")
        assert isinstance(private, ec.EllipticCurvePrivateKey) and self.key.alg == "ES256"
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    @property
    def private_jwk(self) -> dict[str, Any]:
        return dict(json.loads(self.key.jwk.export_private()))
