"""The README's first command: ``manage.py demo`` plays the seed's chain over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_demo_plays_the_seed_chain_over_http(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }
    env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    hops = json.loads(result.stdout)["hops"]
    assert [h["claims"]["aud"] for h in hops] == [
        "https://agent1.example.com",
        "https://agent2.example.com",
        "https://mcp-server1.example.com",
        "https://resource-server.example.com",
    ]
    assert {h["claims"]["sub"] for h in hops} == {"user@example.com"}
    assert {h["claims"]["iss"] for h in hops} == {f"http://127.0.0.1:{port}"}
    assert all(h["header"]["typ"] == "at+jwt" for h in hops)
    assert "act" not in hops[0]["claims"]
    assert hops[3]["claims"]["act"] == {
        "sub": "https://mcp-server1.example.com",
        "act": {"sub": "https://agent2.example.com", "act": {"sub": "https://agent1.example.com"}},
    }
    # seed_demo is idempotent: a second run keeps one cast and prints fresh credentials.
    again = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    cast = json.loads(again.stdout)
    assert set(cast) == {"issuer", "scope", "user", "agents", "resource_server"}
    assert set(cast["agents"]) == {"agent1", "agent2", "mcp-server1"}
    assert set(cast["agents"]["agent1"]) == {"client_id", "client_secret", "uri", "redirect_uri"}
