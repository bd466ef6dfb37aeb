"""Fixtures for the existing-site suite (run with ``--ds=tests_existing_site.settings``).

``legacy_site`` plays the site as it was before delegation_idp: its
migrations are taken back to zero, the site's clients obtain opaque tokens from
django-oauth-toolkit's stock token endpoint with the stock hooks, and then
delegation_idp's migrations are applied, as ``manage.py migrate`` would after
``pip install``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import RequestFactory, override_settings
from oauth2_provider.models import get_application_model
from oauth2_provider.views import TokenView as StockTokenView

STOCK_OAUTH2_PROVIDER = {
    key: value
    for key, value in settings.OAUTH2_PROVIDER.items()
    if key
    not in ("OAUTH2_SERVER_CLASS", "OAUTH2_VALIDATOR_CLASS", "OAUTH2_BACKEND_CLASS", "ACCESS_TOKEN_GENERATOR")
}
LEGACY_EMAIL = "alice@legacy.example.com"
LEGACY_PASSWORD = "legacy-password-1"


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def migrate(app_label: str, target: str | None) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    if target == "latest":
        targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] == app_label]
    else:
        targets = [(app_label, target)]
    executor.migrate(targets)


class _BeforeTokenView(StockTokenView):
    """django-oauth-toolkit's own token view, its oauthlib core not shared with ours."""


@dataclass
class Client:
    application: Any
    secret: str

    @property
    def authorization(self) -> str:
        return basic(self.application.client_id, self.secret)


@dataclass
class LegacySite:
    user: Any
    web: Client  # password grant, bound to the user
    service: Client  # client credentials
    user_token: dict[str, Any]
    service_token: dict[str, Any]
    tables_before: set[str]


def _stock_token(client: Client, data: dict[str, str]) -> dict[str, Any]:
    request = RequestFactory().post(
        "/o/token/",
        urlencode(data),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=client.authorization,
    )
    response = _BeforeTokenView.as_view()(request)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


@pytest.fixture
def legacy_site(transactional_db: Any) -> LegacySite:
    from django.contrib.auth import get_user_model

    from delegation_idp.provider import keys

    migrate("delegation_idp", None)
    keys.keyset.invalidate()
    tables_before = set(connection.introspection.table_names())
    assert not any(name.startswith("delegation_idp_") for name in tables_before)

    with override_settings(OAUTH2_PROVIDER={**STOCK_OAUTH2_PROVIDER, "ALWAYS_RELOAD_OAUTHLIB_CORE": True}):
        Application = get_application_model()
        user = get_user_model().objects.create_user(LEGACY_EMAIL, LEGACY_PASSWORD, full_name="Alice")
        web_secret, service_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        web = Application.objects.create(
            name="Legacy web app",
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_PASSWORD,
            client_secret=web_secret,
            user=user,
            department="sales",
        )
        service = Application.objects.create(
            name="Legacy service",
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=service_secret,
            department="ops",
        )
        web_client, service_client = Client(web, web_secret), Client(service, service_secret)
        user_token = _stock_token(
            web_client,
            {
                "grant_type": "password",
                "username": LEGACY_EMAIL,
                "password": LEGACY_PASSWORD,
                "scope": "read",
            },
        )
        service_token = _stock_token(service_client, {"grant_type": "client_credentials", "scope": "read"})

    migrate("delegation_idp", "latest")
    keys.keyset.invalidate()
    return LegacySite(user, web_client, service_client, user_token, service_token, tables_before)


@pytest.fixture
def token_endpoint(client: Any):
    def post(data: dict[str, Any], authorization: str | None = None) -> Any:
        extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        return client.post(
            "/o/token/",
            urlencode(data, doseq=True),
            content_type="application/x-www-form-urlencoded",
            **extra,
        )

    return post


def authorize_code(client: Any, client_id: str, redirect_uri: str, user: Any, scope: str) -> tuple[str, str]:
    """The user authorizes a client at the site (PKCE); returns (code, verifier)."""
    client.force_login(user)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = client.post(f"/o/authorize/?{urlencode(params)}", {**params, "allow": "Authorize"})
    assert response.status_code == 302, response.content
    code = parse_qs(urlsplit(response["Location"]).query)["code"][0]
    client.logout()
    return code, verifier
