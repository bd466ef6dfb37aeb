"""An unmodified MCP client against the example site: the provider served live, the demo MCP
server (official SDK) and the resource server (Django REST framework) as processes, the cast
seeded with a pre-registered stock MCP client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.support.live import serve_live
from tests.support.tls import https_documents, tls_authority  # noqa: F401 - fixtures


@dataclass(frozen=True)
class McpDemo:
    issuer: str
    cast: dict[str, Any]
    stock: dict[str, Any]  # the stock MCP client: client_id, uri, redirect_uri, scope
    ports: Any  # launch.Ports
    running: Any  # launch.Services

    @property
    def user(self) -> dict[str, str]:
        return dict(self.cast["user"])


@pytest.fixture
def live_provider(live_server: Any, transactional_db: Any, settings: Any) -> Iterator[str]:
    """The provider's issuer URL; the provider served live (tests.support.live)."""
    with serve_live(live_server, settings) as issuer:
        yield issuer


@pytest.fixture
def mcp_demo(live_provider: str, tmp_path: Path) -> Iterator[McpDemo]:
    """The seed's cast for the live services plus the stock MCP client, and mcp-server1 and
    the resource server running against the live provider."""
    from example_project.demo_services import launch
    from example_project.demo_services.cast import seed_live, seed_stock_mcp_client

    ports = launch.Ports.pick()
    cast = seed_live(mcp_url=ports.mcp_url, resource_url=ports.resource_prefix)
    stock = seed_stock_mcp_client(redirect_uri=f"http://127.0.0.1:{free_port()}/callback")
    with launch.services(
        live_provider, cast, ports, tmp_path, roles=("resource-server", "mcp-server1")
    ) as running:
        yield McpDemo(live_provider, cast, stock, ports, running)
