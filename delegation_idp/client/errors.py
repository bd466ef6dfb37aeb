"""The agent client's errors: one class per OAuth error code it can meet, and the one map from
a code to its class (:meth:`OAuthError.from_response`).

The codes of RFC 6749 section 5.2, RFC 8693 section 2.2.2, RFC 9449 (DPoP) and OpenID CIBA
Core section 11 (the answers of a poll) have their own subclasses, so ``except InvalidTarget``
works as well as ``err.error == "invalid_target"``. Needs neither Django nor the provider.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDenied",
    "ApprovalTimeout",
    "AuthorizationPending",
    "ExpiredToken",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "OAuthError",
    "RevocationFailed",
    "SlowDown",
    "UnauthorizedClient",
    "UseDPoPNonce",
]


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str = "", status: int = 400):
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    @classmethod
    def from_response(cls, status: int, body: Any) -> OAuthError:
        """The subclass for the response's ``error`` code (the base class for others)."""
        body = body if isinstance(body, dict) else {}
        error = str(body.get("error") or "server_error")
        kind = _ERRORS.get(error, OAuthError)
        return kind(error, str(body.get("error_description") or ""), status)


class InvalidRequest(OAuthError):
    """Missing, repeated or malformed parameter; invalid subject or actor token (400)."""


class InvalidClient(OAuthError):
    """Client authentication failed (401)."""


class InvalidGrant(OAuthError):
    """The grant (code, refresh token, ``auth_req_id``) is invalid, expired, used or revoked (400)."""


class UnauthorizedClient(OAuthError):
    """This client may not use this grant, or is not a registered, enabled agent (400)."""


class InvalidScope(OAuthError):
    """The scope asked for exceeds what the subject token or the rule allows (400)."""


class InvalidTarget(OAuthError):
    """The audience or resource is unknown or not permitted (RFC 8693 section 2.2.2)."""


class InvalidDPoPProof(OAuthError):
    """The DPoP proof was refused: malformed, replayed, for another URL, or signed with a key
    the token is not bound to (RFC 9449 section 5 and 7.1)."""


class UseDPoPNonce(OAuthError):
    """The server wants a nonce in the proof, and the retry with its nonce was refused too
    (RFC 9449 section 8)."""


class RevocationFailed(OAuthError):
    """The token was not revoked: the provider refused, or stayed unavailable past the retries.
    It is still active until it expires; retry later, or revoke its parent."""


class AccessDenied(OAuthError):
    """The user denied the request, the policy refused it, or it was cancelled (CIBA Core
    section 11; RFC 6749 section 4.1.2.1)."""


class ExpiredToken(OAuthError):
    """The ``auth_req_id`` expired before the user decided (CIBA Core section 11): ask again."""


class AuthorizationPending(OAuthError):
    """The user has not decided yet (CIBA Core section 11): poll again after the interval."""


class SlowDown(OAuthError):
    """Polled sooner than the interval allows (CIBA Core section 11): the interval is now five
    seconds longer."""


class ApprovalTimeout(OAuthError):
    """The caller's own ``timeout`` ran out while the user had not decided (no answer of the
    provider: ``status`` is 0). The request may still be approved: poll again, or let it expire."""


_ERRORS: dict[str, type[OAuthError]] = {
    "invalid_request": InvalidRequest,
    "invalid_client": InvalidClient,
    "invalid_grant": InvalidGrant,
    "unauthorized_client": UnauthorizedClient,
    "invalid_scope": InvalidScope,
    "invalid_target": InvalidTarget,
    "invalid_dpop_proof": InvalidDPoPProof,
    "use_dpop_nonce": UseDPoPNonce,
    "access_denied": AccessDenied,
    "expired_token": ExpiredToken,
    "authorization_pending": AuthorizationPending,
    "slow_down": SlowDown,
}
