"""A token verifier for MCP servers built on the official ``mcp`` SDK.

The MCP authorization specification asks an MCP server to accept only tokens
issued for itself (audience validation) and never to pass a token it received
on to another service (no token passthrough). With this verifier the SDK's
bearer middleware refuses any token that :class:`TokenValidator` refuses,
including one addressed to another party; a tool that needs to call onwards
exchanges the token it received for a new one (RFC 8693)::

    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    url = "https://mcp.example.com/mcp"  # where clients connect: the SDK's RFC 9728 `resource`
    validator = TokenValidator(
        ResourceServerConfig(
            issuer=...,
            resource="https://mcp-server1.example.com",  # identity URI: the audience it is mapped to
            resource_urls=(url,),  # a token addressed to the URL itself (RFC 8707) is accepted too
        )
    )
    server = MCPServer(
        "mcp-server1",
        token_verifier=DelegationTokenVerifier(validator, resource_server_url=url),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=url,
            required_scopes=["tasks.read"],
            validate_token_resource=False,  # the verifier checks `aud` itself
        ),
    )

    @server.tool()
    async def list_tasks() -> dict:
        token = current_token()          # the DelegatedToken of this request
        onward = await agent.exchange(incoming_token(), resource="https://api.example.com/tasks")
        ...

``resource_server_url`` must be one of ``resource_urls`` (:class:`DelegationTokenVerifier`
refuses to start otherwise): the SDK serves the RFC 9728 document for it, and a client
that found this server there asks the provider for ``resource=<that URL>``.
``AccessToken.resource`` is the ``aud`` entry the token was accepted under.

Needs the ``mcp`` extra (``pip install delegation-idp[mcp]``).
"""

from __future__ import annotations

import logging

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from pydantic import ConfigDict

from delegation_idp.resource_server.validation import (
    DelegatedToken,
    TokenError,
    TokenValidator,
    same_resource,
)

__all__ = ["DelegatedAccessToken", "DelegationTokenVerifier", "current_token", "incoming_token"]

logger = logging.getLogger(__name__)


class DelegatedAccessToken(AccessToken):
    """The SDK's ``AccessToken`` with the validated :class:`DelegatedToken` attached."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    delegated: DelegatedToken

    def __repr__(self) -> str:  # the SDK's model would print the token itself
        return f"DelegatedAccessToken(subject={self.subject!r}, actors={list(self.delegated.actors)!r})"

    __str__ = __repr__


class DelegationTokenVerifier:
    """``mcp.server.auth.provider.TokenVerifier`` backed by :class:`TokenValidator`.

    ``resource_server_url``, when given, is the SDK's ``AuthSettings.resource_server_url``:
    it must be among the validator's ``resource_urls``, so that a token addressed to the
    URL the SDK's metadata names is accepted.
    """

    def __init__(self, validator: TokenValidator, *, resource_server_url: str | None = None) -> None:
        if resource_server_url is not None and not any(
            same_resource(str(resource_server_url), url) for url in validator.config.resource_urls
        ):
            raise ValueError(
                f"resource_server_url {resource_server_url!r} is not among the validator's resource_urls"
            )
        self.validator = validator

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            delegated = await self.validator.avalidate(token)
        except TokenError as exc:
            # The reason code only: never the token.
            logger.info("MCP bearer token refused: %s", exc.reason)
            return None
        return DelegatedAccessToken(
            token=token,
            client_id=delegated.client_id,
            scopes=sorted(delegated.scopes),
            expires_at=delegated.expires_at,
            resource=delegated.audience or self.validator.config.resource,
            subject=delegated.subject,
            claims=dict(delegated.claims),
            delegated=delegated,
        )


def current_token() -> DelegatedToken | None:
    """The validated token of the MCP request being handled, or None."""
    access = get_access_token()
    return access.delegated if isinstance(access, DelegatedAccessToken) else None


def incoming_token() -> str | None:
    """The raw token of the MCP request being handled: to exchange, never to forward."""
    access = get_access_token()
    return access.token if access is not None else None
