"""delegation_idp.resource_server works where the provider is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import delegation_idp.resource_server.validation, delegation_idp.resource_server.mcp, delegation_idp.client
assert "django" not in sys.modules, "validation, mcp and client need no Django"
import django
django.setup()
import delegation_idp.resource_server.drf
import delegation_idp.resource_server.metadata
import delegation_idp.resource_server.urls
from django.conf import settings
assert "delegation_idp" not in settings.INSTALLED_APPS
leaked = sorted(m for m in sys.modules if m in ("delegation_idp.models", "oauth2_provider.models")
    or m.startswith(("delegation_idp.provider", "delegation_idp.lineage", "delegation_idp.rfc8693")))
assert not leaked, leaked
from django.test import Client
response = Client().get("/.well-known/oauth-protected-resource")
assert response.status_code == 200, response.status_code
assert response.json()["resource"] == "http://testserver", response.json()
response = Client().get("/api/tasks/")
assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer "), response
url = "http://testserver/.well-known/oauth-protected-resource/api/tasks/"
assert f'resource_metadata="{url}"' in response["WWW-Authenticate"], response["WWW-Authenticate"]
document = Client().get("/.well-known/oauth-protected-resource/api/tasks/").json()
assert document["resource"] == "http://testserver/api/tasks/", document
assert Client().get("/.well-known/oauth-protected-resource/api/other/").status_code == 404
print("ok")
"""


def test_resource_server_needs_neither_the_provider_app_nor_its_models():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.demo_services.resource_settings",
        "IDP_ISSUER": "https://idp.example.com",
        "RESOURCE_SERVER_URI": "https://rs.example.com",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
