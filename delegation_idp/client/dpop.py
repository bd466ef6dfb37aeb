"""DPoP (RFC 9449) on the agent's side: its key, its proofs, the servers' nonces.

* :class:`DPoPKey`: the key an agent proves possession of; every token it requests with a
  proof is bound to it (``cnf.jkt``, its RFC 7638 thumbprint). Generated, or loaded from
  the private JWK the agent keeps; ``repr()`` shows the algorithm and thumbprint only.
* :class:`Nonces`: the latest ``DPoP-Nonce`` each server sent (RFC 9449 sections 8 and 9),
  by origin, so the next proof to that server carries it.
* :class:`DPoPAuth`: an ``httpx.Auth`` for resource servers: ``Authorization: DPoP <token>``
  and a fresh proof (with ``ath``, the token's hash) on every request, sent once more with the
  server's nonce when it answers ``401`` with ``error="use_dpop_nonce"`` (section 9). Works
  with ``httpx.Client`` and ``httpx.AsyncClient`` alike.

Needs neither Django nor the provider; all JOSE goes through :mod:`delegation_idp.jose`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from delegation_idp import jose
from delegation_idp.rfc9449.proof import normalized_htu

__all__ = ["BearerAuth", "DPoPAuth", "DPoPKey", "Nonces", "asks_for_nonce", "origin"]

#: RFC 9449 section 7.1: the authorization scheme of a DPoP-bound access token.
SCHEME = "DPoP"
USE_DPOP_NONCE = "use_dpop_nonce"
_ALGORITHM_OF_KEY: dict[tuple[Any, Any], str] = {
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("OKP", "Ed25519"): "EdDSA",
}


class DPoPKey:
    """An agent's proof-of-possession key (RFC 9449 section 4.2).

    ``DPoPKey.generate("ES256")`` makes a new one (``ES256``, ``ES384``, ``EdDSA``, ``PS256``,
    ``RS256``); ``DPoPKey.from_jwk(private_jwk)`` loads the one an agent keeps across restarts
    (a token bound to a key is only usable while the key is). ``jkt`` is the thumbprint the
    provider writes into ``cnf.jkt``."""

    __slots__ = ("_key", "jkt")

    def __init__(self, key: jose.SigningKey) -> None:
        if key.alg not in jose.ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"a DPoP key signs with an asymmetric algorithm, not {key.alg!r}")
        self._key = key
        self.jkt: str = jose.thumbprint(json.loads(key.jwk.export_public()))

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        return cls(jose.generate_key(alg))

    @classmethod
    def from_jwk(cls, private_jwk: str | Mapping[str, Any], alg: str | None = None) -> DPoPKey:
        """The key of a private JWK (JSON or a dict); ``alg`` defaults to the one its
        ``alg`` member names, else the one its curve signs with (``RS256`` for RSA)."""
        data = json.loads(private_jwk) if isinstance(private_jwk, str) else dict(private_jwk)
        if "d" not in data:
            raise ValueError("a DPoP key needs its private part (the JWK has no 'd')")
        kty = data.get("kty")
        alg = alg or data.get("alg") or _ALGORITHM_OF_KEY.get((kty, data.get("crv")))
        alg = alg or ("RS256" if kty == "RSA" else None)
        if not alg:
            raise ValueError("cannot tell which algorithm this key signs with")
        return cls(jose.load_key(json.dumps(data), alg))

    @property
    def alg(self) -> str:
        return self._key.alg

    def public_jwk(self) -> dict[str, Any]:
        return dict(json.loads(self._key.jwk.export_public()))

    def private_jwk(self) -> str:
        """The private JWK as JSON, for the agent's own secret storage only."""
        return str(self._key.jwk.export_private())

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> str:
        """A proof for one request (section 4.2): ``htm``, ``htu`` (the URL without query and
        fragment), ``iat``, a fresh ``jti``; ``ath`` when an access token goes with it;
        ``nonce`` when the server asked for one."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": normalized_htu(url) or url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = jose.token_hash(access_token)
        if nonce:
            claims["nonce"] = nonce
        return jose.sign_proof(claims, self._key)

    def __repr__(self) -> str:  # never the private key
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a DPoPKey is not pickled; keep its private_jwk() in the agent's secret storage")


def origin(url: str | httpx.URL) -> str:
    """``scheme://host[:port]``: nonces are per server (RFC 9449 sections 8 and 9)."""
    parts = urlsplit(str(url))
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


class Nonces:
    """The latest ``DPoP-Nonce`` each server sent, by origin; thread-safe."""

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, url: str | httpx.URL) -> str | None:
        with self._lock:
            return self._latest.get(origin(url))

    def remember(self, url: str | httpx.URL, response: httpx.Response) -> str | None:
        """Keep the nonce ``response`` carries (any response may, section 8.2); returns it."""
        nonce = response.headers.get("DPoP-Nonce")
        if nonce and _NONCE.match(nonce):
            with self._lock:
                self._latest[origin(url)] = nonce
            return nonce
        return None


# RFC 9449 section 8.1: NQCHAR, 1 or more (0x21, 0x23-0x5B, 0x5D-0x7E).
_NONCE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,512}$")
_ERROR_PARAM = re.compile(r'error\s*=\s*"?([^",\s]+)"?', re.IGNORECASE)


def asks_for_nonce(response: httpx.Response, body: Any = None) -> bool:
    """Whether ``response`` is a ``use_dpop_nonce`` refusal: ``400`` with that error code
    from a token endpoint (section 8), or ``401`` with a ``DPoP`` challenge naming it from a
    resource server (section 9)."""
    if response.status_code == 400:
        return isinstance(body, dict) and body.get("error") == USE_DPOP_NONCE
    if response.status_code == 401:
        for challenge in response.headers.get_list("WWW-Authenticate"):
            if challenge.strip().lower().startswith("dpop"):
                match = _ERROR_PARAM.search(challenge)
                if match and match.group(1) == USE_DPOP_NONCE:
                    return True
    return False


class DPoPAuth(httpx.Auth):
    """Presents a DPoP-bound access token to a resource server (RFC 9449 section 7.1).

    Every request carries ``Authorization: DPoP <token>`` and a new proof signed with ``key``,
    for its method and URL, with ``ath``; the nonce the server last sent is included. On a
    ``401`` whose ``DPoP`` challenge says ``use_dpop_nonce`` the request is sent once more with
    the new nonce (a second refusal is the answer). ``repr()`` never shows the token."""

    def __init__(self, access_token: str, key: DPoPKey, nonces: Nonces | None = None) -> None:
        self._token = access_token
        self.key = key
        self.nonces = nonces if nonces is not None else Nonces()

    def __repr__(self) -> str:
        return f"DPoPAuth(key={self.key!r})"

    def _sign(self, request: httpx.Request, nonce: str | None) -> None:
        request.headers["Authorization"] = f"{SCHEME} {self._token}"
        request.headers["DPoP"] = self.key.proof(
            request.method, str(request.url), access_token=self._token, nonce=nonce
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self.nonces.get(request.url)
        self._sign(request, sent)
        response = yield request
        fresh = self.nonces.remember(request.url, response)
        if asks_for_nonce(response) and fresh and fresh != sent:
            self._sign(request, fresh)
            response = yield request
            self.nonces.remember(request.url, response)


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` (RFC 6750), for tokens that are not bound."""

    def __init__(self, access_token: str) -> None:
        self._token = access_token

    def __repr__(self) -> str:
        return "BearerAuth()"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
