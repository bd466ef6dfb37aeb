"""Peer client libraries, unmodified, against the example site served live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.live import serve_live


@pytest.fixture
def live_provider(live_server: Any, transactional_db: Any, settings: Any) -> Iterator[str]:
    """The provider's issuer URL; the provider served live (tests.support.live)."""
    with serve_live(live_server, settings) as issuer:
        yield issuer


@pytest.fixture
def live_cast(live_provider: str) -> dict[str, Any]:
    """The seed's cast (user -> agent1 -> agent2 -> mcp-server1 -> resource server), with
    its credentials, registered at the live provider."""
    from example_project.demo_services.seed import seed

    return {**seed(), "issuer": live_provider}
