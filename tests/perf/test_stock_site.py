"""The benchmark's baseline is a stock django-oauth-toolkit site on the same database terms.

Each check runs the site's settings in a subprocess (this process runs the project's test
settings): nothing of the project is loaded, django-oauth-toolkit keeps its defaults, the
middleware variants are what they claim, and its database is configured exactly as the
project's bench site configures its own.
"""

from __future__ import annotations

import ast
import json
import secrets
import subprocess
import sys
from pathlib import Path

import django
import pytest

from tests.procs import site_env

ROOT = Path(__file__).resolve().parent.parent.parent

INSPECT_STOCK_SITE = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.urls import resolve
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauthlib.oauth2 import Server
import bench.stock_wsgi  # the WSGI application gunicorn serves
match = resolve("/o/token/")
print(json.dumps({
    "debug": settings.DEBUG,
    "installed_apps": settings.INSTALLED_APPS,
    "middleware": settings.MIDDLEWARE,
    "oauth2_provider_setting": hasattr(settings, "OAUTH2_PROVIDER"),
    "token_view": f"{match.func.view_class.__module__}.{match.func.view_class.__qualname__}",
    "dot_defaults": oauth2_settings.OAUTH2_VALIDATOR_CLASS is OAuth2Validator
        and oauth2_settings.OAUTH2_SERVER_CLASS is Server
        and oauth2_settings.OAUTH2_BACKEND_CLASS is OAuthLibCore
        and oauth2_settings.ACCESS_TOKEN_GENERATOR is None,
    "project_modules": sorted(
        m for m in sys.modules
        if m.split(".")[0] in ("delegation_idp", "example_project", "rest_framework", "celery")
    ),
}))
"""

DUMP_DATABASES = """
import importlib, json, sys
print(json.dumps(importlib.import_module(sys.argv[1]).DATABASES, sort_keys=True, default=str))
"""


def python(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def stock_env(tmp_path: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = site_env(tmp_path, issuer="http://127.0.0.1:8000", database_url=database_url, PYTHONPATH=str(ROOT))
    return {
        **{k: v for k, v in env.items() if not k.startswith("IDP_")},
        "DJANGO_SETTINGS_MODULE": "bench.stock_settings",
        **extra,
    }


def startproject_middleware() -> list[str]:
    """MIDDLEWARE in the settings template of the installed Django's ``startproject``."""
    template = Path(django.__file__).parent / "conf" / "project_template" / "project_name" / "settings.py-tpl"
    for node in ast.parse(template.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MIDDLEWARE" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("no MIDDLEWARE in Django's startproject template")


@pytest.mark.parametrize("variant", ["bare", "typical"])
def test_the_stock_site_is_django_oauth_toolkit_with_its_defaults(tmp_path: Path, variant: str) -> None:
    seen = json.loads(python(stock_env(tmp_path, BENCH_STOCK_MIDDLEWARE=variant), "-c", INSPECT_STOCK_SITE))
    assert seen["debug"] is False
    assert seen["installed_apps"] == ["django.contrib.auth", "django.contrib.contenttypes", "oauth2_provider"]
    assert seen["middleware"] == ([] if variant == "bare" else startproject_middleware())
    assert seen["oauth2_provider_setting"] is False
    assert seen["dot_defaults"] is True
    assert seen["token_view"] == "oauth2_provider.views.base.TokenView"
    assert seen["project_modules"] == []


@pytest.mark.parametrize(
    ("url", "timeout"),
    [
        ("sqlite:///{tmp}/bench.sqlite3", None),
        ("postgres://postgres@127.0.0.1:5432/bench_site", None),
        ("postgres://postgres@127.0.0.1:5432/bench_site", "0"),
        ("postgres://postgres@127.0.0.1:5432/bench_site", "2"),
    ],
)
def test_both_sites_configure_the_same_database_the_same_way(
    tmp_path: Path, url: str, timeout: str | None
) -> None:
    """Same URL, same environment: the same DATABASES (engine, options, persistent
    connections, health checks). Nothing connects."""
    url = url.format(tmp=tmp_path)
    extra = {"DATABASE_TIMEOUT": timeout} if timeout is not None else {}
    project = {**site_env(tmp_path, issuer="http://127.0.0.1:8000", database_url=url), **extra}
    project["IDP_CLIENT_SECRET_HMAC_KEY"] = secrets.token_urlsafe(32)
    project["PYTHONPATH"] = str(ROOT)
    ours = json.loads(python(project, "-c", DUMP_DATABASES, "bench.settings"))
    theirs = json.loads(
        python({**stock_env(tmp_path, url), **extra}, "-c", DUMP_DATABASES, "bench.stock_settings")
    )
    assert theirs == ours
    assert ours["default"]["CONN_MAX_AGE"] == 60 and ours["default"]["CONN_HEALTH_CHECKS"] is True
    if url.startswith("sqlite"):
        assert ours["default"]["OPTIONS"]["init_command"].startswith("PRAGMA journal_mode=WAL")


def test_the_stock_cast_authenticates_with_an_unhashed_and_a_hashed_secret(tmp_path: Path) -> None:
    """bench.stock_site's two applications get opaque client-credentials tokens from both
    middleware variants; one secret is stored as it is, the other with Django's password hasher."""
    env = stock_env(tmp_path)
    python(env, "-m", "django", "migrate", "--no-input", "--verbosity", "0")
    cast = json.loads(python(env, "-m", "bench.stock_site"))
    assert cast["unhashed"]["stored"] == "plain"
    assert cast["hashed"]["stored"].startswith("pbkdf2_")
    request = """
import base64, json, sys
import django
django.setup()
from django.test import Client
from bench.scenarios import token_kind
cast = json.loads(sys.argv[1])
out = {}
for name, client in cast.items():
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    response = Client().post(
        "/o/token/", "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    body = response.json()
    out[name] = [response.status_code, token_kind(body.get("access_token", "")), body.get("token_type")]
wrong = base64.b64encode(f"{cast['unhashed']['client_id']}:not-the-secret".encode()).decode()
refused = Client().post(
    "/o/token/", "grant_type=client_credentials",
    content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Basic {wrong}",
)
out["wrong secret"] = refused.status_code
print(json.dumps(out))
"""
    for variant in ("bare", "typical"):
        answers = json.loads(
            python(
                {**env, "BENCH_STOCK_MIDDLEWARE": variant, "DJANGO_ALLOWED_HOSTS": "testserver"},
                "-c",
                request,
                json.dumps(cast),
            )
        )
        assert answers == {
            "unhashed": [200, "opaque", "Bearer"],
            "hashed": [200, "opaque", "Bearer"],
            "wrong secret": 401,
        }
