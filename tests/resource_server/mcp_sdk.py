"""The official ``mcp`` SDK client's OAuth discovery, driven unmodified up to the point where
it would send the user to the authorization endpoint.

``OAuthClientProvider`` on a 401: ``resource_metadata`` from the challenge, the RFC 9728
document and its check against the URL called (``_validate_resource_match``), the RFC 8414
metadata of the authorization server the document names, then the authorization URL with
``resource=`` (RFC 8707). The redirect handler records that URL and ends the run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2


class _Redirected(Exception):
    """Raised from the SDK's redirect handler: discovery is over, no user is asked."""


@dataclass
class Discovery:
    """What the SDK found before it would send the user off."""

    metadata: Any = None  # the ProtectedResourceMetadata it accepted
    authorization_url: str | None = None
    error: BaseException | None = None  # the SDK's refusal (OAuthFlowError), if any
    calls: list[tuple[int, str]] = field(default_factory=list)

    @property
    def resource(self) -> str | None:
        """The RFC 8707 ``resource`` it would ask the authorization server for."""
        if self.authorization_url is None:
            return None
        return parse_qs(urlsplit(self.authorization_url).query).get("resource", [None])[0]


class _Recording(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, calls: list[tuple[int, str]]) -> None:
        self.inner = inner
        self.calls = calls

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        self.calls.append((response.status_code, str(request.url)))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def discover(
    url: str, *, client_id: str, redirect_uri: str, transport: httpx2.AsyncBaseTransport | None = None
) -> Discovery:
    """Run the SDK's flow for ``url`` with a pre-registered client (no registration)."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

    found = Discovery()

    class Storage:
        async def get_tokens(self) -> None:
            return None

        async def set_tokens(self, tokens: Any) -> None:
            return None

        async def get_client_info(self) -> Any:
            return OAuthClientInformationFull(client_id=client_id, redirect_uris=[redirect_uri])

        async def set_client_info(self, info: Any) -> None:
            return None

    async def redirect_handler(authorization_url: str) -> None:
        found.authorization_url = authorization_url
        raise _Redirected

    async def callback_handler() -> Any:  # never reached: the redirect ends the run
        raise AssertionError("no callback expected")

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(redirect_uris=[redirect_uri]),
        storage=Storage(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    recording = _Recording(transport or httpx2.AsyncHTTPTransport(), found.calls)

    async def flow() -> None:
        async with httpx2.AsyncClient(transport=recording, auth=provider, timeout=30) as http:
            await http.get(url)

    try:
        asyncio.run(flow())
    except _Redirected:
        pass
    except Exception as exc:  # the SDK's refusal, e.g. OAuthFlowError
        found.error = exc
    found.metadata = provider.context.protected_resource_metadata
    return found


def initialize_request(token: str) -> dict[str, Any]:
    """The keyword arguments of an MCP ``initialize`` request over streamable HTTP, as any
    client sends it first, with ``token`` as its bearer token."""
    return {
        "headers": {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        },
        "json": {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
    }
