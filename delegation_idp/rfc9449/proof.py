"""Checking one DPoP proof (RFC 9449 section 4.3), at the token endpoint or a resource server.

:func:`check_proof` makes every check of section 4.3 in order and returns the
:class:`Proof` (the key's RFC 7638 thumbprint, ``jkt``, and the proof's ``jti``), or raises
:class:`ProofError` with a stable code:

1. one proof, at most ``max_bytes`` long, before anything is decoded;
2. a compact JWS whose header has ``typ`` ``dpop+jwt``, an asymmetric ``alg`` of the
   allow-list and a public ``jwk`` of that algorithm's key type, and nothing else
   (:func:`delegation_idp.jose.verify_proof`), signed by that key;
3. ``htm`` the request's method and ``htu`` its URL, both compared without the query
   and fragment and with the scheme and host case and default port normalised (RFC 3986
   section 6.2.2 and 6.2.3);
4. ``iat`` within the window (``max_age`` back, ``leeway`` ahead);
5. ``ath``, when an access token is presented, the token's hash;
6. ``nonce``, when the server requires one, a nonce it currently accepts;
7. ``jti`` never seen within the window (the replay store is consulted last, so that only
   proofs that passed every other check take a place in it).

The error codes are ``ProofError.code``: ``use_dpop_nonce`` when only the nonce is missing or
stale (the client retries with the nonce the server sends), ``invalid_dpop_proof`` for every
other failure. ``ProofError.reason`` names the failed check for audit and logs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from delegation_idp import jose
from delegation_idp.rfc9449.replay import ReplayStore

__all__ = ["ALGORITHMS", "Proof", "ProofError", "ProofPolicy", "check_proof", "normalized_htu"]

#: The proof algorithms offered by default: asymmetric only (section 4.2).
ALGORITHMS = ("ES256", "ES384", "EdDSA", "PS256", "RS256")

INVALID = "invalid_dpop_proof"
USE_NONCE = "use_dpop_nonce"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ProofError(Exception):
    """A proof refused: ``code`` is the RFC 9449 error (``invalid_dpop_proof`` or
    ``use_dpop_nonce``), ``reason`` the check that failed (``dpop_<check>``)."""

    def __init__(self, reason: str, code: str = INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        #: the thumbprint of the key whose signature verified, for a proof refused after that
        #: (replayed, stale, for another URL...): "" when the signature was not checked
        self.jkt = ""


@dataclass(frozen=True)
class Proof:
    """A proof that passed every check: whose key (``jkt``), which proof (``jti``), when."""

    jkt: str
    jti: str
    iat: int
    nonce: str | None = None


@dataclass(frozen=True)
class ProofPolicy:
    """How one endpoint checks proofs: the algorithm allow-list, the ``iat`` window, the
    size limits, where seen ``jti`` values go, and whether nonces are required (then
    ``accepts_nonce`` decides which)."""

    algorithms: tuple[str, ...]
    replay: ReplayStore
    max_age: int = 60
    leeway: int = 5
    max_bytes: int = 4096
    max_header_bytes: int = 2048
    accepts_nonce: Callable[[str], bool] | None = None

    @property
    def requires_nonce(self) -> bool:
        return self.accepts_nonce is not None


@functools.lru_cache(maxsize=1024)  # a server sees few URLs, and a client proves for the same ones
def normalized_htu(url: str) -> str:
    """``url`` as ``htu`` is compared (section 4.3 check 9): scheme and host lower-cased, the
    scheme's default port left out, no query and no fragment; ``""`` for a URL that is not
    absolute."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if not scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def _one_proof(headers: Iterable[str]) -> str:
    values = [v for v in headers]
    if not values:
        raise ProofError("dpop_missing")
    if len(values) != 1 or "," in values[0]:
        # Section 4.3 check 1: exactly one DPoP header (WSGI joins repeated headers with ",").
        raise ProofError("dpop_multiple_proofs")
    if not values[0].strip():
        raise ProofError("dpop_malformed")  # one header, with nothing in it
    return values[0].strip()


def check_proof(
    headers: Iterable[str],
    *,
    method: str,
    url: str | Sequence[str],
    now: float,
    policy: ProofPolicy,
    access_token: str | None = None,
) -> Proof:
    """The :class:`Proof` in the request's ``DPoP`` header values, checked (module docstring).
    ``url`` is the request's URL, or every URL by which the endpoint is known (the URL the
    request came to, and the one the server advertises for it)."""
    token = _one_proof(headers)
    if len(token) > policy.max_bytes:
        raise ProofError("dpop_too_large")
    try:
        _header, claims, jkt = jose.verify_proof(
            token,
            algorithms=policy.algorithms,
            max_bytes=policy.max_bytes,
            max_header_bytes=policy.max_header_bytes,
            max_json_depth=4,
        )
    except jose.JoseError as exc:
        raise ProofError(f"dpop_{exc.reason}") from exc
    try:
        return _checked_claims(
            claims, jkt, method=method, url=url, now=now, policy=policy, access_token=access_token
        )
    except ProofError as exc:
        exc.jkt = jkt  # the signature verified: the refusal names the key that made the proof
        raise


def _checked_claims(
    claims: dict[str, Any],
    jkt: str,
    *,
    method: str,
    url: str | Sequence[str],
    now: float,
    policy: ProofPolicy,
    access_token: str | None,
) -> Proof:
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise ProofError("dpop_bad_jti")
    if htm != method.upper():
        raise ProofError("dpop_wrong_method")
    # An empty normal form (a relative URL) matches nothing, not even another empty one: a
    # caller that could not name the request's URL refuses every proof.
    expected = {normalized_htu(u) for u in ([url] if isinstance(url, str) else url)} - {""}
    if not isinstance(htu, str) or not expected or normalized_htu(htu) not in expected:
        raise ProofError("dpop_wrong_url")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise ProofError("dpop_bad_iat")
    if iat > now + policy.leeway or iat < now - policy.max_age:
        raise ProofError("dpop_stale")
    ath = claims.get("ath")
    if access_token is not None:
        if not isinstance(ath, str) or ath != jose.token_hash(access_token):
            raise ProofError("dpop_wrong_ath")
    nonce = claims.get("nonce")
    if policy.accepts_nonce is not None:
        if not isinstance(nonce, str) or not policy.accepts_nonce(nonce):
            raise ProofError("dpop_nonce_required" if nonce is None else "dpop_nonce_stale", USE_NONCE)
    # Last: only a proof that passed every other check takes its place in the store, kept
    # for as long as any proof with its iat would be accepted.
    if not policy.replay.first_use(f"{jkt}:{jti}", policy.max_age + policy.leeway + 1):
        raise ProofError("dpop_replayed")
    return Proof(jkt=jkt, jti=jti, iat=int(iat), nonce=nonce if isinstance(nonce, str) else None)
