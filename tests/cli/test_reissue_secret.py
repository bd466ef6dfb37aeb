"""``manage.py reissue_secret``: a new client secret, shown once, stored as registration stores
it; the old secret stops authenticating at once."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.management import CommandError
from django.test import override_settings
from oauth2_provider.models import get_application_model

from delegation_idp.models import Party
from delegation_idp.provider import client_auth
from delegation_idp.provider.agents import register_party
from tests.cli.conftest import run
from tests.helpers import assert_oauth_error

Application = get_application_model()
HMAC_KEY = "r" * 16 + "0123456789abcdef0123"  # 36 bytes, test only


def client_credentials(client: Any, client_id: str, secret: str) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post(
        "/o/token/",
        urlencode({"grant_type": "client_credentials"}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )


@pytest.fixture(params=["keyed hash", "password hash"])
def hashing(request: Any) -> Any:
    """Both ways a generated secret is stored: HMAC under CLIENT_SECRET_HMAC_KEY, or without
    the key django-oauth-toolkit's password hash."""
    key = HMAC_KEY if request.param == "keyed hash" else None
    with override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, "CLIENT_SECRET_HMAC_KEY": key}):
        yield request.param


def test_the_new_secret_works_and_the_old_one_stops_at_once(db: Any, client: Any, hashing: str) -> None:
    reg = register_party("https://bot.example.com", "Bot")
    assert reg.client_secret
    assert client_credentials(client, reg.client_id, reg.client_secret).status_code == 200

    data = run("reissue_secret", "Bot", "--json").json()
    assert data == {
        "uri": "https://bot.example.com",
        "client_id": reg.client_id,
        "client_secret": data["client_secret"],
    }
    new = data["client_secret"]
    assert len(new) >= 43 and new != reg.client_secret

    assert client_credentials(client, reg.client_id, new).status_code == 200
    assert_oauth_error(client_credentials(client, reg.client_id, reg.client_secret), 401, "invalid_client")

    stored = Application.objects.get(client_id=reg.client_id)
    assert new not in stored.client_secret
    if hashing == "keyed hash":
        assert client_auth.is_keyed_hash(stored.client_secret) and stored.hash_client_secret is False
    else:
        assert (
            stored.client_secret.startswith("md5$") and stored.hash_client_secret is True
        )  # the tests' hasher


def test_text_output_shows_the_secret_once(db: Any) -> None:
    reg = register_party("https://bot.example.com", "Bot")
    out = run("reissue_secret", reg.client_id).stdout
    secret = out.split("client_secret (shown once): ")[1].split()[0]
    assert f"client_id: {reg.client_id}" in out
    stored = Application.objects.get(client_id=reg.client_id)
    assert secret not in stored.client_secret


def test_a_party_without_a_secret_is_a_command_error(db: Any) -> None:
    register_party("https://api.example.com", "API", Party.RESOURCE_SERVER)
    with pytest.raises(CommandError, match="has no OAuth client"):
        run("reissue_secret", "API")
    reg = register_party("https://spa.example.com", "SPA")
    Application.objects.filter(client_id=reg.client_id).update(client_type=Application.CLIENT_PUBLIC)
    with pytest.raises(CommandError, match="public"):
        run("reissue_secret", "SPA")
    with pytest.raises(CommandError, match="No registered party"):
        run("reissue_secret", "nobody")
