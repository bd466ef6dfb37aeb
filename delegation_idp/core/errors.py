"""OAuth errors as exceptions: one class per error code, each carrying its :class:`Reason`.

The classes follow the error codes of RFC 6749 section 5.2, RFC 8693 section 2.2.2
and RFC 8707 section 2, with the RFC's words as their docstrings. A refusal is
raised with the reason from the catalogue (:mod:`delegation_idp.core.reasons`),
which also fixes its class: ``raise refusal(Reason.NO_RULE)`` raises
:class:`InvalidTarget`. Lower-level errors are chained (``raise ... from exc``).
The endpoint turns any of them into the JSON response in one place.

Pure: the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from delegation_idp.core.reasons import Reason

__all__ = [
    "AccessDenied",
    "AuthorizationPending",
    "ExpiredToken",
    "InvalidAuthorizationDetails",
    "InvalidBindingMessage",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidDpopProof",
    "InvalidGrant",
    "InvalidRedirectUri",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "InvalidToken",
    "OAuthError",
    "ServerError",
    "SlowDown",
    "TemporarilyUnavailable",
    "UnauthorizedClient",
    "UnknownUserId",
    "UnsupportedGrantType",
    "UseDpopNonce",
    "refusal",
]


class OAuthError(Exception):
    """An OAuth error response, for one reason of the catalogue.

    ``description`` replaces the reason's public description when a more precise
    one helps the client (naming the parameter that is missing, say); it must be
    as public as the catalogue's own words.
    """

    error: ClassVar[str] = ""

    def __init__(
        self, reason: Reason, description: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        if reason.error != self.error:
            raise ValueError(f"{reason.value!r} is answered with {reason.error!r}, not {self.error!r}")
        super().__init__(reason.value)
        self.reason = reason
        self.description = description or reason.description
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return self.reason.status

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}

    @property
    def json(self) -> str:
        return json.dumps(self.as_dict())


class InvalidRequest(OAuthError):
    """The request is missing a required parameter, includes an unsupported parameter value,
    repeats a parameter, or is otherwise malformed (RFC 6749 section 5.2)."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed (RFC 6749 section 5.2)."""

    error = "invalid_client"


class InvalidToken(OAuthError):
    """The access token provided is expired, revoked, malformed, or invalid for other reasons
    (RFC 6750 section 3.1); the resource server answers it with 401."""

    error = "invalid_token"


class InvalidGrant(OAuthError):
    """The provided authorization grant is invalid, expired or revoked (RFC 6749 section 5.2)."""

    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """The authenticated client is not authorized to use this authorization grant type
    (RFC 6749 section 5.2)."""

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """The authorization grant type is not supported by the authorization server
    (RFC 6749 section 5.2)."""

    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """The requested scope is invalid, unknown, malformed, or exceeds the scope granted
    (RFC 6749 section 5.2)."""

    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """The authorization server is unwilling or unable to issue a token for any target service
    indicated by the ``resource`` or ``audience`` parameters (RFC 8693 section 2.2.2,
    RFC 8707 section 2)."""

    error = "invalid_target"


class AccessDenied(OAuthError):
    """The resource owner or the server denied the request (RFC 6749 section 4.1.2.1; RFC 7592
    section 2 answers it with 403)."""

    error = "access_denied"


class InvalidRedirectUri(OAuthError):
    """The value of one or more redirection URIs is invalid (RFC 7591 section 3.2.2)."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """The value of one of the client metadata fields is invalid (RFC 7591 section 3.2.2)."""

    error = "invalid_client_metadata"


class SlowDown(OAuthError):
    """The client is making requests too quickly and must wait (``Retry-After``)."""

    error = "slow_down"


class TemporarilyUnavailable(OAuthError):
    """The server is currently unable to handle the request; the client may retry
    (``Retry-After``)."""

    error = "temporarily_unavailable"


class InvalidDpopProof(OAuthError):
    """The DPoP proof is invalid, or a proof is missing where one is required
    (RFC 9449 section 5 and 7.1)."""

    error = "invalid_dpop_proof"


class UseDpopNonce(OAuthError):
    """The server requires a nonce in the DPoP proof: resend it with the one in the
    ``DPoP-Nonce`` header (RFC 9449 section 8 and 9)."""

    error = "use_dpop_nonce"


class AuthorizationPending(OAuthError):
    """The authorization request is still pending as the end-user hasn't yet been
    authenticated or approved it (OpenID CIBA Core section 11)."""

    error = "authorization_pending"


class ExpiredToken(OAuthError):
    """The ``auth_req_id`` has expired: the client must make a new request
    (OpenID CIBA Core section 11)."""

    error = "expired_token"


class UnknownUserId(OAuthError):
    """The provider cannot identify which end-user the client wishes to be authenticated by
    means of the hint (OpenID CIBA Core section 13)."""

    error = "unknown_user_id"


class InvalidBindingMessage(OAuthError):
    """The binding message is invalid or unacceptable for use in the context of the given
    request (OpenID CIBA Core section 13)."""

    error = "invalid_binding_message"


class InvalidAuthorizationDetails(OAuthError):
    """The ``authorization_details`` parameter is malformed or holds an unknown type, unknown
    fields or unacceptable values (RFC 9396 section 5)."""

    error = "invalid_authorization_details"


class ServerError(OAuthError):
    """The server encountered an unexpected condition that prevented it from answering."""

    error = "server_error"


_CLASSES: dict[str, type[OAuthError]] = {
    cls.error: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidToken,
        InvalidGrant,
        UnauthorizedClient,
        UnsupportedGrantType,
        InvalidScope,
        InvalidTarget,
        AccessDenied,
        InvalidRedirectUri,
        InvalidClientMetadata,
        SlowDown,
        TemporarilyUnavailable,
        InvalidDpopProof,
        UseDpopNonce,
        AuthorizationPending,
        ExpiredToken,
        UnknownUserId,
        InvalidBindingMessage,
        InvalidAuthorizationDetails,
        ServerError,
    )
}


def refusal(
    reason: Reason, description: str | None = None, *, headers: Mapping[str, str] | None = None
) -> OAuthError:
    """The exception of ``reason``'s OAuth error, for ``reason``."""
    return _CLASSES[reason.error](reason, description, headers=headers)
