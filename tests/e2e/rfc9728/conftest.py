"""Fixtures for the RFC 9728 black-box tests: the site's resource options, a provider token
addressed anew, and the official ``mcp`` SDK client driven against the test site."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.resource_server.conftest import readdress  # noqa: F401 (a fixture, shared)

WELL_KNOWN = "/.well-known/oauth-protected-resource"


@pytest.fixture
def configure(settings: Any, cast: Any) -> Any:
    """Set the resource server's options: its identity is the seed's, the rest as given."""

    def apply(**options: Any) -> None:
        settings.DELEGATION_IDP = {
            **settings.DELEGATION_IDP,
            "RESOURCE_SERVER_URI": cast.resource_server,
            "RESOURCE_SCOPES_SUPPORTED": ["tasks.read", "tasks.write"],
            **options,
        }

    return apply


class _Redirected(Exception):
    """Raised from the SDK's redirect handler: discovery is over, no user is asked."""


class DjangoAsyncTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport over Django's test client, so the SDK's own HTTP client
    reaches the test site (provider and resource server) in this test's transaction."""

    def __init__(self) -> None:
        from django.test import Client

        self.client = Client()
        self.calls: list[tuple[int, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "content-type", "accept-encoding", "connection")
        }
        url = request.url
        response = self.client.generic(
            request.method,
            url.raw_path.decode("ascii"),
            data=body,
            content_type=request.headers.get("content-type", ""),
            headers=headers,
            secure=url.scheme == "https",
            SERVER_NAME=url.host,
            SERVER_PORT=str(url.port or (443 if url.scheme == "https" else 80)),
        )
        self.calls.append((response.status_code, str(url)))
        return httpx2.Response(response.status_code, headers=list(response.items()), content=response.content)


@dataclass
class Discovery:
    """What the SDK's ``OAuthClientProvider`` found before it would send the user off."""

    metadata: Any = None  # the ProtectedResourceMetadata it accepted
    authorization_url: str | None = None
    error: BaseException | None = None
    calls: list[tuple[int, str]] = field(default_factory=list)

    @property
    def resource(self) -> str | None:
        """The RFC 8707 ``resource`` it would ask the authorization server for."""
        if self.authorization_url is None:
            return None
        return parse_qs(urlsplit(self.authorization_url).query).get("resource", [None])[0]


@pytest.fixture
def mcp_sdk_discovery(db: Any, cast: Any) -> Any:
    """Run the official ``mcp`` SDK client's OAuth flow, unmodified, against ``url`` on the
    test site: a request without a token, the 401's ``resource_metadata``, the RFC 9728
    document and its check (``OAuthClientProvider._validate_resource_match``), the RFC 8414
    metadata of the authorization server it names, up to the authorization redirect."""

    def run(url: str) -> Discovery:
        from mcp.client.auth import OAuthClientProvider
        from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

        found = Discovery()
        redirect = cast["agent1"].redirect_uri

        class Storage:
            async def get_tokens(self) -> None:
                return None

            async def set_tokens(self, tokens: Any) -> None:
                return None

            async def get_client_info(self) -> Any:
                client_id = cast["agent1"].client_id
                return OAuthClientInformationFull(client_id=client_id, redirect_uris=[redirect])

            async def set_client_info(self, info: Any) -> None:
                return None

        async def redirect_handler(authorization_url: str) -> None:
            found.authorization_url = authorization_url
            raise _Redirected

        async def callback_handler() -> Any:  # never reached: the redirect ends the run
            raise AssertionError("no callback expected")

        provider = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata(redirect_uris=[redirect]),
            storage=Storage(),
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        transport = DjangoAsyncTransport()

        async def flow() -> None:
            async with httpx2.AsyncClient(transport=transport, auth=provider) as http:
                await http.get(url)

        try:
            asyncio.run(flow())
        except _Redirected:
            pass
        except Exception as exc:  # the SDK's refusal, e.g. OAuthFlowError
            found.error = exc
        found.metadata = provider.context.protected_resource_metadata
        found.calls = transport.calls
        return found

    return run
