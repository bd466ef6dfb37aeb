"""``manage.py demo_live --enterprise``: the two-domain demo, run as a user runs it (embedded
defaults: SQLite, Celery eager, no Redis), prints the ID-JAG, the token redeemed for it and
the chain the resource server saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_idp.idjag import TYP
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]
AGENT1 = "https://agent1.example.com"
MCP = "https://mcp-server1.example.com"


@pytest.mark.integration
@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-4.3")
@pytest.mark.rfc("draft-ietf-oauth-identity-assertion-authz-grant-5.1")
def test_demo_live_enterprise_crosses_two_domains(tmp_path):
    tools = f"http://127.0.0.1:{free_port()}"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("CELERY_BROKER_URL", "REDIS_URL", "SSL_CERT_FILE")
        },
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "IDP_ISSUER": tools,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tools.sqlite3'}",
        # the test key, not a development key written into the checkout
        "IDP_OIDC_RSA_PRIVATE_KEY_FILE": str(ROOT / "tests" / "support" / "oidc-test-key.pem"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "demo_live", "--enterprise", "--no-serve", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    trace = json.loads(result.stdout)
    idp = trace["enterprise_idp"]
    assert idp.startswith("https://127.0.0.1:") and trace["tools_authorization_server"] == tools
    jag, token = trace["id_jag"], trace["access_token"]
    assert jag["typ"] == TYP and jag["iss"] == idp and jag["aud"] == tools
    assert jag["resource"] == trace["mcp_server"] and jag["act"] == {"sub": AGENT1}
    assert (
        token["iss"] == tools and token["client_id"] == jag["client_id"] and token["act"] == {"sub": AGENT1}
    )
    assert token["sub"] != jag["sub"]  # a local user of the tools domain, linked to (idp, sub)
    saw = trace["resource_server_saw"]
    assert saw["sub"] == token["sub"] and saw["actors"] == [MCP, AGENT1]
    assert "list_tasks" in trace["tools"]
