"""Two instances of the example site on loopback, each with its own database and keys:

* **A, the enterprise IdP**: gunicorn in a process of its own, over https with a certificate
  of the test CA (tests.support.tls), its SQLite database migrated and seeded by
  ``manage.py seed_enterprise_idp``;
* **B, the tools domain's authorization server**: the example site served live in this
  process (tests.support.live), seeded with the live cast, trusting A for ID-JAGs; it fetches
  A's JWK set over https with django-oauth-toolkit's fetcher (loopback counted as public,
  every other check as shipped: tests.support.cimd), and mcp-server1 and the resource server
  run against it as processes of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.procs import Cluster, cluster, manage, site_env
from tests.support.live import serve_live
from tests.support.tls import Authority, make_authority


@dataclass(frozen=True)
class TwoDomains:
    idp: str  # A's issuer (https)
    tools: str  # B's issuer
    idp_cast: dict[str, Any]  # A's seed: the user, agent1's credentials there
    tools_cast: dict[str, Any]  # B's live seed
    tools_client: dict[str, Any]  # agent1's client at B
    ports: Any  # launch.Ports of B's services
    running: Any  # launch.Services
    idp_site: Cluster
    idp_env: dict[str, str]

    @property
    def mcp_url(self) -> str:
        return str(self.ports.mcp_url)


@pytest.fixture(scope="session")
def enterprise_tls(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """The test CA and the certificate (localhost, 127.0.0.1) the enterprise IdP serves with."""
    return make_authority(tmp_path_factory.mktemp("enterprise-tls"))


@pytest.fixture
def tools_provider(
    live_server: Any, transactional_db: Any, settings: Any, monkeypatch: Any, enterprise_tls: Authority
) -> Iterator[str]:
    """B's issuer: the live site, fetching trusted issuers' key sets over https (the test CA)."""
    from django.core.cache import cache

    with serve_live(live_server, settings) as issuer:
        settings.DELEGATION_IDP = {
            **settings.DELEGATION_IDP,
            "ID_JAG_JWKS_FETCHER": "tests.support.cimd.LoopbackTestFetcher",
        }
        monkeypatch.setenv("SSL_CERT_FILE", str(enterprise_tls.ca_path))
        cache.clear()  # the JWKS cache and the replay store
        yield issuer
        cache.clear()


@pytest.fixture
def two_domains(tools_provider: str, tmp_path: Path, enterprise_tls: Authority) -> Iterator[TwoDomains]:
    from example_project.demo_services import launch
    from example_project.demo_services.cast import seed_live
    from example_project.demo_services.enterprise import seed_tools_as

    ports = launch.Ports.pick()
    tools_cast = seed_live(mcp_url=ports.mcp_url, resource_url=ports.resource_prefix)
    idp_dir = tmp_path / "enterprise-idp"
    idp_dir.mkdir()
    port = free_port()
    idp = f"https://127.0.0.1:{port}"
    env = site_env(idp_dir, issuer=idp)
    with cluster(idp_dir, env) as site:
        assert site.gunicorn(port, name="enterprise-idp", tls=enterprise_tls) == idp
        idp_cast = json.loads(
            manage(
                env,
                "seed_enterprise_idp",
                "--tools-issuer",
                tools_provider,
                "--mcp-url",
                ports.mcp_url,
                "--client-id",
                tools_cast["agents"]["agent1"]["client_id"],
            ).stdout
        )
        tools_client = seed_tools_as(idp, f"{idp}/.well-known/jwks.json", tools_cast)
        with launch.services(
            tools_provider, tools_cast, ports, tmp_path, roles=("resource-server", "mcp-server1")
        ) as running:
            yield TwoDomains(
                idp, tools_provider, idp_cast, tools_cast, tools_client, ports, running, site, env
            )
