"""mcp-server1 on the official MCP Python SDK (``MCPServer``, streamable HTTP).

Its token verifier is :class:`delegation_idp.resource_server.mcp.DelegationTokenVerifier`:
only tokens addressed to mcp-server1 get in, by its identity URI or by the URL clients
connect to (``public_url``, which the SDK's RFC 9728 document names as ``resource``). With
:class:`~delegation_idp.resource_server.mcp.DpopAuthMiddleware` added to the SDK's app, a
DPoP-bound token gets in with a proof of its key (RFC 9449), and never as a bearer token.
Its tool ``list_tasks`` exchanges the token it received for one addressed to the
resource server (RFC 8693, with an RFC 8707 ``resource``) and calls the resource server
with that new token; the received token is never forwarded (the MCP token-passthrough
rule).

The server has a DPoP key of its own (RFC 9449): the token it exchanges for is bound to it,
and its call to the resource server carries a proof of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

from delegation_idp.client import AsyncAgentClient, unverified_claims
from delegation_idp.resource_server.mcp import (
    DelegationTokenVerifier,
    DpopAuthMiddleware,
    current_token,
    incoming_token,
)
from delegation_idp.resource_server.validation import ResourceServerConfig, TokenValidator


@dataclass(frozen=True)
class McpConfig:
    issuer: str
    uri: str  # identity URI: the audience the provider maps its URL to
    public_url: str  # where clients connect, e.g. http://127.0.0.1:8003/mcp: its RFC 9728 `resource`
    client_id: str
    client_secret: str
    resource_url: str  # the resource server's API


def build_verifier(config: McpConfig, *, http: httpx.Client | None = None) -> DelegationTokenVerifier:
    """The token verifier; ``http`` is the client its validator reaches the provider with (tests)."""
    validator = TokenValidator(
        ResourceServerConfig(issuer=config.issuer, resource=config.uri, resource_urls=(config.public_url,)),
        http=http,
    )
    return DelegationTokenVerifier(validator, resource_server_url=config.public_url)


def build_server(config: McpConfig, *, verifier: DelegationTokenVerifier) -> MCPServer:
    """The server, whose SDK authenticates with ``verifier``."""
    idp = AsyncAgentClient(config.issuer, config.client_id, config.client_secret, dpop=True)
    server = MCPServer(
        "mcp-server1",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=config.issuer,
            resource_server_url=config.public_url,
            required_scopes=["tasks.read"],
            # the verifier checks `aud` (its identity URI or public_url) itself
            validate_token_resource=False,
        ),
    )

    @server.tool()
    async def list_tasks() -> dict[str, Any]:
        """The user's tasks from the resource server, and the chain that asked for them."""
        received, token = current_token(), incoming_token()
        if received is None or token is None:
            raise PermissionError("no validated token")
        onward = await idp.exchange(token, resource=config.resource_url)
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(config.resource_url, auth=idp.auth(onward))
        claims = unverified_claims(onward.access_token)
        return {
            "party": config.uri,
            "key": idp.dpop_key.jkt if idp.dpop_key else None,
            "received": {
                "sub": received.subject,
                "actors": list(received.actors),
                "depth": received.depth,
                "jti": received.jti,
                "aud": list(received.audiences),
                "jkt": received.jkt,
            },
            "sent": {"jti": claims.get("jti"), "aud": claims.get("aud"), "jkt": onward.jkt},
            "downstream_status": response.status_code,
            "downstream": response.json(),
        }

    return server


def mcp_app(config: McpConfig, host: str = "127.0.0.1", *, http: httpx.Client | None = None) -> Starlette:
    """The SDK's streamable-HTTP app, taking DPoP-bound tokens as well as bearer ones."""
    verifier = build_verifier(config, http=http)
    app = build_server(config, verifier=verifier).streamable_http_app(host=host)
    app.add_middleware(DpopAuthMiddleware, verifier=verifier)
    return app
