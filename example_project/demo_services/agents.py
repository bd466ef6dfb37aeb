"""agent1 and agent2 as small HTTP services (Starlette), without Django.

``POST /task`` with ``Authorization: Bearer <a token addressed to this agent>``.
The agent validates the token (:class:`TokenValidator`, its own URI as the
audience), exchanges it at the provider for a token addressed to the next hop
(:class:`AsyncAgentClient`), and calls that hop with the new token: agent1
calls agent2 over HTTP, agent2 calls the MCP server's tool with the official
MCP SDK client over streamable HTTP. The token received is never sent on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from delegation_idp.client import AsyncAgentClient, OAuthError, unverified_claims
from delegation_idp.resource_server.validation import (
    DelegatedToken,
    ResourceServerConfig,
    TokenError,
    TokenValidator,
)


def describe(token: DelegatedToken) -> dict[str, Any]:
    return {
        "sub": token.subject,
        "actors": list(token.actors),
        "depth": token.depth,
        "jti": token.jti,
        "aud": list(token.audiences),
    }


def sent(token: str) -> dict[str, Any]:
    """The claims of a token this service sent, for the trace (never the token)."""
    claims = unverified_claims(token)
    return {"jti": claims.get("jti"), "aud": claims.get("aud")}


@dataclass(frozen=True)
class AgentConfig:
    issuer: str
    uri: str
    client_id: str
    client_secret: str
    next_url: str  # agent2's /task, or the MCP server's /mcp
    next_audience: str | None = None  # exchange with `audience`; else with `resource=next_url`


def bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def refusal(exc: TokenError, uri: str) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={"WWW-Authenticate": f'Bearer realm="{uri}", error="{exc.error}"'},
    )


async def call_mcp_tool(url: str, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call ``tool`` on the MCP server at ``url`` with the official SDK over streamable HTTP."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"the MCP tool {tool} failed")
    return dict(result.structured_content or {})


def agent_app(config: AgentConfig, *, mcp_tool: str | None = None) -> Starlette:
    """agent1 (``mcp_tool`` None: the next hop is another agent) or agent2 (calls ``mcp_tool``)."""
    validator = TokenValidator(ResourceServerConfig(issuer=config.issuer, resource=config.uri))
    idp = AsyncAgentClient(config.issuer, config.client_id, config.client_secret)

    async def task(request: Request) -> JSONResponse:
        token = bearer(request)
        try:
            received = await validator.avalidate(token)
        except TokenError as exc:
            return refusal(exc, config.uri)
        try:
            if config.next_audience:
                onward = await idp.exchange(token, audience=config.next_audience)
            else:
                onward = await idp.exchange(token, resource=config.next_url)
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "at": config.uri}, status_code=502)
        if mcp_tool is None:
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.post(
                    config.next_url, headers={"Authorization": f"Bearer {onward.access_token}"}
                )
            downstream = response.json()
            if response.status_code != 200:
                return JSONResponse({"error": "downstream", "downstream": downstream}, status_code=502)
        else:
            downstream = await call_mcp_tool(config.next_url, onward.access_token, mcp_tool, {})
        return JSONResponse(
            {
                "party": config.uri,
                "received": describe(received),
                "sent": sent(onward.access_token),
                "downstream": downstream,
            }
        )

    return Starlette(routes=[Route("/task", task, methods=["POST"])])
