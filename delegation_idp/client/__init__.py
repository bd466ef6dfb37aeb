"""The agent client role: what an agent runs to exchange, refresh and revoke its tokens, and
to present them, DPoP-bound (RFC 9449) or bearer, to the next hop.

Needs neither Django nor this app installed (:mod:`delegation_idp.client.agent`,
:mod:`delegation_idp.client.ciba` for the user's approval, :mod:`delegation_idp.client.dpop`,
:mod:`delegation_idp.client.errors`).
"""

from delegation_idp.client.agent import (
    ACCESS_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    AgentClient,
    AsyncAgentClient,
    ExchangeResult,
    unverified_claims,
)
from delegation_idp.client.ciba import BackchannelAuthentication
from delegation_idp.client.dpop import BearerAuth, DPoPAuth, DPoPKey, Nonces
from delegation_idp.client.errors import (
    AccessDenied,
    ApprovalTimeout,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    RevocationFailed,
    SlowDown,
    UnauthorizedClient,
    UseDPoPNonce,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AccessDenied",
    "AgentClient",
    "ApprovalTimeout",
    "AsyncAgentClient",
    "AuthorizationPending",
    "BackchannelAuthentication",
    "BearerAuth",
    "DPoPAuth",
    "DPoPKey",
    "ExchangeResult",
    "ExpiredToken",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "Nonces",
    "OAuthError",
    "RevocationFailed",
    "SlowDown",
    "UnauthorizedClient",
    "UseDPoPNonce",
    "unverified_claims",
]
