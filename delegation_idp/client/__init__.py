"""The agent client role: what an agent runs to exchange, refresh and revoke its tokens, and
to present them, DPoP-bound (RFC 9449) or bearer, to the next hop.

Needs neither Django nor this app installed (:mod:`delegation_idp.client.agent`,
:mod:`delegation_idp.client.dpop`).
"""

from delegation_idp.client.agent import (
    ACCESS_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    AgentClient,
    AsyncAgentClient,
    ExchangeResult,
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    RevocationFailed,
    UnauthorizedClient,
    UseDPoPNonce,
    unverified_claims,
)
from delegation_idp.client.dpop import BearerAuth, DPoPAuth, DPoPKey, Nonces

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AgentClient",
    "AsyncAgentClient",
    "BearerAuth",
    "DPoPAuth",
    "DPoPKey",
    "ExchangeResult",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "Nonces",
    "OAuthError",
    "RevocationFailed",
    "UnauthorizedClient",
    "UseDPoPNonce",
    "unverified_claims",
]
