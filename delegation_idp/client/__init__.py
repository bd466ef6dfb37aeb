"""The agent client role: what an agent runs to exchange, refresh and revoke its tokens.

Needs neither Django nor this app installed (:mod:`delegation_idp.client.agent`).
"""

from delegation_idp.client.agent import (
    ACCESS_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    AgentClient,
    AsyncAgentClient,
    ExchangeResult,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    RevocationFailed,
    UnauthorizedClient,
    unverified_claims,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AgentClient",
    "AsyncAgentClient",
    "ExchangeResult",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "OAuthError",
    "RevocationFailed",
    "UnauthorizedClient",
    "unverified_claims",
]
