"""django-oauth-toolkit's OpenID Connect as DelegationServer serves it (OpenID Connect Core 1.0):
ID tokens name the user as every other token does, ``prompt=none`` is answered at the redirect
URI, and a client that cannot be given RS256 ID tokens is granted the rest of what it asked."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings
from oauth2_provider.models import get_application_model

from delegation_idp.checks import check_oidc_keys
from tests.conftest import authorize_code, code_form
from tests.helpers import decode

pytestmark = pytest.mark.django_db


def _params(agent: Any, scope: str, **extra: str) -> dict[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return {
        "response_type": "code",
        "client_id": agent.client_id,
        "redirect_uri": agent.redirect_uri,
        "scope": scope,
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


@pytest.mark.rfc("oidc-core-2")
def test_the_id_tokens_sub_is_the_users_subject_in_every_token(cast, client, token_endpoint):
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, f"openid {cast.scope}")
    tokens = token_endpoint(code_form(agent, code, verifier), agent).json()
    id_claims, access_claims = decode(tokens["id_token"])[1], decode(tokens["access_token"])[1]
    assert id_claims["sub"] == access_claims["sub"] == cast.user.email  # SUBJECT_RESOLVER's
    assert id_claims["sub"] != str(cast.user.pk)


@pytest.mark.rfc("oidc-core-3.1.2.6")
def test_prompt_none_is_answered_consent_required_at_the_redirect_uri(cast, client):
    agent = cast["agent1"]
    client.force_login(cast.user)
    params = _params(agent, f"openid {cast.scope}", prompt="none")
    response = client.get(f"/o/authorize/?{urlencode(params)}")
    assert response.status_code == 302, response.content[:500]
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == agent.redirect_uri
    query = parse_qs(location.query)
    assert query["error"] == ["consent_required"] and query["state"] == ["xyz"]
    assert "code" not in query


@pytest.mark.rfc("6749-3.3")
def test_a_client_without_rs256_is_granted_the_rest_without_an_id_token(cast, client, token_endpoint):
    agent = cast["agent2"]
    app = get_application_model().objects.get(client_id=agent.client_id)
    app.algorithm = app.NO_ALGORITHM
    app.save(update_fields=["algorithm"])
    code, verifier = authorize_code(client, agent, cast.user, f"openid {cast.scope}")
    response = token_endpoint(code_form(agent, code, verifier), agent)
    assert response.status_code == 200, response.content
    body = response.json()
    assert "id_token" not in body
    assert "openid" not in body["scope"].split() and set(body["scope"].split()) == set(cast.scope.split())


@pytest.mark.rfc("6749-4.1.2.1")
def test_only_openid_for_a_client_without_rs256_is_invalid_scope(cast, client):
    agent = cast["agent2"]
    app = get_application_model().objects.get(client_id=agent.client_id)
    app.algorithm = app.HS256_ALGORITHM
    app.save(update_fields=["algorithm"])
    client.force_login(cast.user)
    response = client.get(f"/o/authorize/?{urlencode(_params(agent, 'openid'))}")
    assert response.status_code == 302, response.content[:500]
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_scope"]


def test_without_openid_connect_the_code_flow_issues_no_id_token(cast, client, token_endpoint, settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ENABLED": False}
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    response = token_endpoint(code_form(agent, code, verifier), agent)
    assert response.status_code == 200, response.content
    assert "id_token" not in response.json() and "access_token" in response.json()


def _pem(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_e037_takes_a_key_listed_as_current_and_inactive(settings):
    current = django_settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"]
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [current]}
    assert check_oidc_keys() == []


def test_e037_refuses_an_rsa_key_under_2048_bits(settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEY": _pem(1024)}
    assert [e.id for e in check_oidc_keys()] == ["delegation_idp.E037"]
