"""Keyed-hash storage of generated agent client secrets; other applications keep DOT's hashing."""

from __future__ import annotations

import base64
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from django.contrib.auth.hashers import make_password
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from oauth2_provider import oauth2_validators
from oauth2_provider.models import get_application_model

from delegation_idp.provider import client_auth
from delegation_idp.provider.agents import register_party
from tests.helpers import assert_oauth_error, decode

Application = get_application_model()
CC = {"grant_type": "client_credentials"}


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def form(client: Any, path: str, data: dict[str, str], **headers: Any) -> Any:
    return client.post(path, urlencode(data), content_type="application/x-www-form-urlencoded", **headers)


def idp_settings_with(**changes: Any) -> Any:
    from django.conf import settings as django_settings

    return override_settings(DELEGATION_IDP={**django_settings.DELEGATION_IDP, **changes})


KEY = "k" * 16 + "0123456789abcdef0123"  # 36 bytes, test only


@pytest.fixture
def hmac_key() -> Any:
    with idp_settings_with(CLIENT_SECRET_HMAC_KEY=KEY):
        yield KEY


def test_registered_agent_secret_is_stored_as_keyed_hash(db: Any, hmac_key: str) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    app = Application.objects.get(client_id=reg.client_id)
    assert app.client_secret.startswith("delegation-hmac-sha256$")
    assert app.hash_client_secret is False
    assert reg.client_secret not in app.client_secret
    assert client_auth.verify_secret(reg.client_secret, app.client_secret)


def test_agent_authenticates_without_the_password_hasher(db: Any, hmac_key: str, client: Any) -> None:
    """The keyed hash is checked by HMAC: Django's (slow) password hasher is never called."""
    reg = register_party("https://agent9.example.com", "Agent 9")
    # Imported before patching, so the patch replaces the function django-oauth-toolkit calls.
    with mock.patch.object(oauth2_validators, "check_password", side_effect=AssertionError("slow path")):
        response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret))
    assert response.status_code == 200, response.content
    assert decode(response.json()["access_token"])[1]["client_id"] == reg.client_id


def test_body_credentials_work_too(db: Any, hmac_key: str, client: Any) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    response = form(
        client, "/o/token/", {**CC, "client_id": reg.client_id, "client_secret": reg.client_secret}
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("which", ["wrong", "stored_hash", "empty"])
def test_wrong_secret_or_the_stored_hash_itself_is_refused(
    db: Any, hmac_key: str, client: Any, which: str
) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    stored = Application.objects.get(client_id=reg.client_id).client_secret
    secret = {"wrong": reg.client_secret[:-1] + "x", "stored_hash": stored, "empty": ""}[which]
    response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, secret))
    assert_oauth_error(response, 401, "invalid_client")


def test_another_hmac_key_does_not_verify(db: Any, hmac_key: str, client: Any) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    with idp_settings_with(CLIENT_SECRET_HMAC_KEY="z" * 40):
        response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret))
    assert_oauth_error(response, 401, "invalid_client")
    with idp_settings_with(CLIENT_SECRET_HMAC_KEY=None):
        response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret))
    assert_oauth_error(response, 401, "invalid_client")


def test_without_a_key_agents_keep_the_password_hash(db: Any, client: Any) -> None:
    with idp_settings_with(CLIENT_SECRET_HMAC_KEY=None):
        reg = register_party("https://agent9.example.com", "Agent 9")
        app = Application.objects.get(client_id=reg.client_id)
        assert not client_auth.is_keyed_hash(app.client_secret)
        assert app.client_secret != reg.client_secret  # DOT hashed it
        response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret))
    assert response.status_code == 200, response.content


def test_short_key_is_a_configuration_error(db: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with idp_settings_with(CLIENT_SECRET_HMAC_KEY="short"), pytest.raises(ImproperlyConfigured):
        client_auth.hash_secret("x" * 43)


def test_non_agent_application_keeps_django_oauth_toolkit_hashing(
    db: Any, hmac_key: str, client: Any
) -> None:
    secret = "a-human-chosen-secret-for-a-plain-application"
    app = Application.objects.create(
        name="plain",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=True,
    )
    app.refresh_from_db()
    stored = app.client_secret
    assert not client_auth.is_keyed_hash(stored) and stored != secret
    response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(app.client_id, secret))
    assert response.status_code == 200, response.content
    app.refresh_from_db()
    assert app.client_secret == stored  # never rewritten: not an agent
    bad = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(app.client_id, secret + "x"))
    assert_oauth_error(bad, 401, "invalid_client")


def test_plain_stored_secret_of_a_non_agent_still_works(db: Any, hmac_key: str, client: Any) -> None:
    app = Application.objects.create(
        name="plain",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret="unhashed-secret",
        hash_client_secret=False,
    )
    response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(app.client_id, "unhashed-secret"))
    assert response.status_code == 200, response.content


def test_agent_with_a_legacy_password_hash_is_upgraded_once(db: Any, hmac_key: str, client: Any) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    Application.objects.filter(client_id=reg.client_id).update(
        client_secret=make_password(reg.client_secret), hash_client_secret=True
    )
    response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret))
    assert response.status_code == 200, response.content
    app = Application.objects.get(client_id=reg.client_id)
    assert client_auth.is_keyed_hash(app.client_secret) and app.hash_client_secret is False
    again = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret))
    assert again.status_code == 200, again.content


def test_failed_authentication_does_not_upgrade(db: Any, hmac_key: str, client: Any) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    legacy = make_password(reg.client_secret)
    Application.objects.filter(client_id=reg.client_id).update(client_secret=legacy, hash_client_secret=True)
    response = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, "x" * 43))
    assert_oauth_error(response, 401, "invalid_client")
    assert Application.objects.get(client_id=reg.client_id).client_secret == legacy


def test_introspection_accepts_keyed_hash_secrets(db: Any, hmac_key: str, client: Any) -> None:
    reg = register_party("https://agent9.example.com", "Agent 9")
    token = form(client, "/o/token/", CC, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret)).json()[
        "access_token"
    ]
    response = form(
        client, "/o/introspect/", {"token": token}, HTTP_AUTHORIZATION=basic(reg.client_id, reg.client_secret)
    )
    assert response.status_code == 200 and response.json()["active"] is True


@settings(max_examples=60, deadline=None)
@given(secret=st.text(min_size=1, max_size=80), other=st.text(min_size=1, max_size=80))
def test_keyed_hash_property(secret: str, other: str) -> None:
    """verify(s, hash(s)) holds, verify(t, hash(s)) fails for t != s, and the hash never contains s."""
    with idp_settings_with(CLIENT_SECRET_HMAC_KEY=KEY):
        stored = client_auth.hash_secret(secret)
        assert client_auth.is_keyed_hash(stored)
        assert client_auth.verify_secret(secret, stored)
        assert client_auth.verify_secret(other, stored) is (other == secret)
        assert client_auth.hash_secret(secret) == stored  # deterministic: no salt needed, the key is secret
        assert not client_auth.verify_secret(stored, stored)
