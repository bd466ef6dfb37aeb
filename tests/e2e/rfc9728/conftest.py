"""Fixtures for the RFC 9728 black-box tests: the site's resource options, a provider token
addressed anew, and the official ``mcp`` SDK client driven against the test site."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.resource_server.conftest import readdress  # noqa: F401 (a fixture, shared)
from tests.resource_server.mcp_sdk import Discovery, discover

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


class DjangoAsyncTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport over Django's test client, so the SDK's own HTTP client
    reaches the test site (provider and resource server) in this test's transaction."""

    def __init__(self) -> None:
        from django.test import Client

        self.client = Client()

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
        return httpx2.Response(response.status_code, headers=list(response.items()), content=response.content)


@pytest.fixture
def mcp_sdk_discovery(db: Any, cast: Any) -> Any:
    """Run the official ``mcp`` SDK client's OAuth flow, unmodified, against ``url`` on the
    test site (:func:`tests.resource_server.mcp_sdk.discover`), as agent1's registered client."""

    def run(url: str) -> Discovery:
        agent = cast["agent1"]
        return discover(
            url, client_id=agent.client_id, redirect_uri=agent.redirect_uri, transport=DjangoAsyncTransport()
        )

    return run
