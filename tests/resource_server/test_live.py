"""The four hops over real HTTP: separate processes, the real MCP SDK on both sides."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.helpers import decode
from tests.procs import cluster, manage, site_env
from tests.resource_server.mcp_sdk import initialize_request

ROOT = Path(__file__).resolve().parents[2]
AGENT1 = "https://agent1.example.com"
AGENT2 = "https://agent2.example.com"
MCP = "https://mcp-server1.example.com"
RS = "https://resource-server.example.com"


@pytest.mark.integration
def test_demo_live_plays_four_real_hops(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }
    for name in ("CELERY_BROKER_URL", "REDIS_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "demo_live", "--no-serve", "--json", "--auto-approve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stdout, result.stderr[-4000:]  # the trace is printed even when a step failed
    trace = json.loads(result.stdout)
    saw = trace["resource_server_saw"]
    assert saw["sub"] == "user@example.com"
    assert saw["actors"] == [MCP, AGENT2, AGENT1]  # mcp-server1 <- agent2 <- agent1
    assert saw["aud"] == [RS]
    hops = trace["hops"]
    assert [h["party"] for h in hops] == [AGENT1, AGENT2, MCP, RS]
    assert [h["received"]["actors"] for h in hops] == [[], [AGENT1], [AGENT2, AGENT1], [MCP, AGENT2, AGENT1]]
    assert {h["received"]["sub"] for h in hops} == {"user@example.com"}
    # Every hop sent on a new token (the next hop received exactly what was sent), never its own.
    for sender, receiver in zip(hops, hops[1:], strict=False):
        assert sender["sent"]["jti"] == receiver["received"]["jti"]
        assert sender["sent"]["jti"] != sender["received"]["jti"]
    assert hops[-1]["answer"]["through"] == f"{MCP} <- {AGENT2} <- {AGENT1}"
    # DPoP (RFC 9449): every service has a key of its own; every token is bound to the key of
    # the service that requested it (agent1 redeemed the user's code), and proven by it.
    keys = [h["key"] for h in hops[:3]]
    assert len(set(keys)) == 3 and all(isinstance(k, str) and len(k) == 43 for k in keys)
    assert [h["received"]["jkt"] for h in hops] == [keys[0], keys[0], keys[1], keys[2]]
    assert [h["sent"]["jkt"] for h in hops[:3]] == keys
    assert "eyJ" not in result.stdout  # no token is ever printed
    assert '"d"' not in result.stdout  # nor a private key
    # Then an unmodified MCP SDK client (the stock MCP client) logged in on its own and called the tool.
    sdk = trace["sdk_login"]
    assert "error" not in sdk, sdk["error"]
    assert sdk["authorization_request"]["resource"] == trace["urls"]["mcp-server1"]
    assert sdk["token"]["aud"] == trace["urls"]["mcp-server1"] and sdk["token"]["act"] is None
    assert sdk["resource_server_saw"]["actors"] == [MCP, "https://stock-mcp-client.example.com"]
    # The sensitive hop: agent2's payment waited for the user's approval (OpenID CIBA), which the
    # command gave on the approval page (--auto-approve); the resource server saw the approved hop.
    payment = trace["sensitive_hop"]
    assert payment["outcome"] == "paid", payment
    assert payment["approved_on_page"] is True
    assert (
        "Pay Merchant A 123.50 EUR" in payment["shown_on_page"]
        and "payment_initiation" in payment["shown_on_page"]
    )
    assert payment["asked"]["binding_message"] == "Pay Merchant A 123.50 EUR"
    assert payment["resource_server_saw"]["actors"] == [AGENT2, AGENT1]
    assert (
        payment["resource_server_saw"]["aud"] == [RS]
        and payment["resource_server_saw"]["sub"] == "user@example.com"
    )
    assert payment["token"]["jkt"] == keys[1]  # bound to agent2's key, which proved the request and the polls
    (detail,) = payment["authorization_details"]
    assert detail["type"] == "payment_initiation" and detail["instructedAmount"] == {
        "currency": "EUR",
        "amount": "123.50",
    }
    assert payment["token"]["authorization_details"] == payment["authorization_details"]
    assert "auth_req_id" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture
def live(tmp_path):
    """The provider under gunicorn, the cast seeded for the live services, the four services."""
    from example_project.demo_services import launch

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer)
    ports = launch.Ports.pick()
    with cluster(tmp_path, env) as procs:
        cast = json.loads(
            manage(
                env, "seed_live", "--mcp-url", ports.mcp_url, "--resource-url", ports.resource_prefix
            ).stdout
        )
        procs.gunicorn(port)
        with launch.services(issuer, cast, ports, tmp_path) as running:
            yield issuer, cast, ports, running


def _client(issuer, cast, name):
    from delegation_idp.client import AgentClient

    agent = cast["agents"][name]
    return AgentClient(issuer, agent["client_id"], agent["client_secret"])


def _initialize(url: str, token: str) -> httpx.Response:
    """An MCP initialize request over streamable HTTP, as any client would send it first."""
    return httpx.post(url, timeout=30, **initialize_request(token))


@pytest.mark.integration
@pytest.mark.rfc("9728-5.1")
def test_mcp_server_refuses_tokens_not_addressed_to_it_and_never_passes_its_token_on(live):
    from example_project.demo_services.agents import call_mcp_tool
    from example_project.demo_services.management.commands.demo import user_token

    issuer, cast, ports, _running = live
    user = user_token(issuer, cast)
    to_agent2 = _client(issuer, cast, "agent1").exchange(user, audience=AGENT2).access_token
    agent2 = _client(issuer, cast, "agent2")
    to_mcp = agent2.exchange(to_agent2, resource=ports.mcp_url).access_token
    assert decode(to_mcp)[1]["aud"] == MCP  # the RFC 8707 resource URL named the MCP server

    # Audience: agent2's own token (aud agent2) and the user's token are refused with a challenge.
    for foreign in (to_agent2, user):
        response = _initialize(ports.mcp_url, foreign)
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert 'error="invalid_token"' in challenge
        assert "resource_metadata=" in challenge and "/.well-known/oauth-protected-resource" in challenge
    assert _initialize(ports.mcp_url, to_mcp).status_code == 200

    # The tool, called with the real MCP SDK client, reaches the resource server with a new token.
    result = asyncio.run(call_mcp_tool(ports.mcp_url, to_mcp, "list_tasks", {}))
    received, sent, seen = result["received"], result["sent"], result["downstream"]["saw"]
    assert received["jti"] == decode(to_mcp)[1]["jti"]
    assert sent["jti"] != received["jti"]  # not the token it received
    assert seen["jti"] == sent["jti"]  # the resource server saw only the exchanged token
    assert seen["aud"] == [RS] and seen["sub"] == "user@example.com"
    assert seen["actors"] == [MCP, AGENT2, AGENT1]
    assert result["downstream_status"] == 200

    # Passing the MCP server's token through would not work anyway: the resource server refuses it.
    refused = httpx.get(ports.resource_url, headers={"Authorization": f"Bearer {to_mcp}"}, timeout=30)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # The challenge points at the document of the URL called, which names that URL (RFC 9728
    # section 3.3), not the identity URI the provider maps it to.
    url = re.search(r'resource_metadata="([^"]+)"', refused.headers["WWW-Authenticate"]).group(1)
    assert url == f"http://127.0.0.1:{ports.resource}/.well-known/oauth-protected-resource/api/tasks/"
    assert httpx.get(url, timeout=30).json() == {
        "resource": ports.resource_url,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tasks.read", "tasks.write"],
    }


@pytest.mark.integration
@pytest.mark.rfc("9728-3.3")
def test_a_stock_mcp_sdk_client_accepts_both_servers_metadata_over_real_http(live):
    """The official SDK's OAuth client, unmodified, on a 401 from the demo's resource server
    and from its MCP server: it follows ``resource_metadata``, accepts the document for the
    URL it called, finds the provider, and would ask it for ``resource=<that URL>``."""
    from tests.resource_server.mcp_sdk import discover

    issuer, cast, ports, _running = live
    agent = cast["agents"]["agent1"]
    for url in (ports.resource_url, ports.mcp_url):
        found = discover(url, client_id=agent["client_id"], redirect_uri=agent["redirect_uri"])
        assert found.error is None, (url, found.error, found.calls)
        assert found.metadata is not None, ("no protected-resource metadata found", url, found.calls)
        assert str(found.metadata.resource) == url
        assert [str(s) for s in found.metadata.authorization_servers] == [issuer]
        assert found.resource == url
        assert found.authorization_url.startswith(f"{issuer}/o/authorize/")
