"""mcp-server1 on the official MCP Python SDK (``MCPServer``, streamable HTTP).

Its token verifier is :class:`delegation_idp.resource_server.mcp.DelegationTokenVerifier`:
only tokens addressed to mcp-server1 get in, by its identity URI or by the URL clients
connect to (``public_url``, which the SDK's RFC 9728 document names as ``resource``).
Its tool ``list_tasks`` exchanges the token it received for one addressed to the
resource server (RFC 8693, with an RFC 8707 ``resource``) and calls the resource server
with that new token; the received token is never forwarded (the MCP token-passthrough
rule).

DPoP (RFC 9449): :class:`~delegation_idp.resource_server.mcp.DpopAuthMiddleware` lets the
SDK's app take ``Authorization: DPoP`` with a proof (bearer tokens still go to the SDK's
own authentication); the server's own key binds the token it exchanges for, and its call to
the resource server carries a proof of that key.
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


def build_server(
    config: McpConfig, *, http: httpx.Client | None = None
) -> tuple[MCPServer, DelegationTokenVerifier]:
    """The server and its token verifier; ``http`` is the client its validator reaches the
    provider with (tests)."""
    validator = TokenValidator(
        ResourceServerConfig(issuer=config.issuer, resource=config.uri, resource_urls=(config.public_url,)),
        http=http,
    )
    idp = AsyncAgentClient(config.issuer, config.client_id, config.client_secret, dpop=True)
    verifier = DelegationTokenVerifier(validator, resource_server_url=config.public_url)
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

    return server, verifier


def mcp_app(config: McpConfig, host: str = "127.0.0.1", *, http: httpx.Client | None = None) -> Starlette:
    server, verifier = build_server(config, http=http)
    app = server.streamable_http_app(host=host)
    app.add_middleware(DpopAuthMiddleware, verifier=verifier)
    return app
