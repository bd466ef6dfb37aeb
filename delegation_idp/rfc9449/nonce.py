"""Server-provided DPoP nonces (RFC 9449 section 8 and 9), without server-side state.

A nonce names a time window and carries an HMAC of it under the deployment's secret:
``<window>.<mac>``. Every process that shares the secret issues the same nonce within a
window and accepts the current and the previous window's, so a nonce one process sent is
good at every other, and nonces rotate by themselves once per ``lifetime`` seconds. The
window gives a proof at most two lifetimes of validity; its ``jti`` still may be used once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["NonceIssuer"]


class NonceIssuer:
    """Issues and accepts nonces for one purpose (``label``: the token endpoint, or one
    resource server), under ``secret``."""

    def __init__(self, secret: bytes, *, lifetime: int = 300, label: str = "token") -> None:
        if lifetime < 1:
            raise ValueError("a nonce lifetime is at least one second")
        self._secret = hashlib.sha256(b"delegation_idp.dpop-nonce:" + label.encode() + b":" + secret).digest()
        self.lifetime = lifetime

    def _mac(self, window: int) -> str:
        digest = hmac.new(self._secret, str(window).encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def current(self, now: float) -> str:
        """The nonce to send now (in ``DPoP-Nonce``)."""
        window = int(now // self.lifetime)
        return f"{window:x}.{self._mac(window)}"

    def accepts(self, nonce: str, now: float) -> bool:
        """Whether ``nonce`` is this or the previous window's."""
        # ASCII only: hmac.compare_digest raises on other str (a 500, not a refusal).
        if len(nonce) > 64 or not nonce.isascii() or nonce.count(".") != 1:
            return False
        head, mac = nonce.split(".")
        try:
            window = int(head, 16)
        except ValueError:
            return False
        current = int(now // self.lifetime)
        if window not in (current, current - 1) or head != f"{window:x}":
            return False
        return hmac.compare_digest(mac, self._mac(window))
