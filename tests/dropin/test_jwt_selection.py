"""JWT access tokens for every application, or only for agents and chosen client ids."""

from __future__ import annotations

import base64
import secrets

import pytest
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp.models import TokenLineage
from tests.helpers import assert_oauth_error, decode

CLIENT_CREDENTIALS = {"grant_type": "client_credentials", "scope": "tasks.read"}


class Legacy:
    """A plain confidential client that is not a registered party."""

    def __init__(self) -> None:
        Application = get_application_model()
        self.client_secret = secrets.token_urlsafe(24)
        self.application = Application.objects.create(
            name="Legacy reporting service",
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=self.client_secret,
        )
        self.client_id = self.application.client_id

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()


@pytest.fixture
def legacy(db) -> Legacy:
    return Legacy()


def with_options(settings, **options) -> None:
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, **options}


def issue(token_endpoint, legacy: Legacy) -> str:
    response = token_endpoint(CLIENT_CREDENTIALS, HTTP_AUTHORIZATION=legacy.basic)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def test_all_applications_get_jwts_by_default(settings, token_endpoint, legacy):
    assert settings.DELEGATION_IDP.get("JWT_ACCESS_TOKENS", "all") == "all"
    header, claims = decode(issue(token_endpoint, legacy))
    assert header["typ"] == "at+jwt"
    assert claims["client_id"] == legacy.client_id
    assert TokenLineage.objects.filter(client_id=legacy.client_id).count() == 1


def test_agents_mode_keeps_opaque_tokens_for_other_applications(settings, token_endpoint, legacy):
    with_options(settings, JWT_ACCESS_TOKENS="agents")
    token = issue(token_endpoint, legacy)
    assert token.count(".") == 0
    # Still django-oauth-toolkit's row, and no lineage of ours.
    assert get_access_token_model().objects.filter(token=token, application=legacy.application).exists()
    assert not TokenLineage.objects.filter(client_id=legacy.client_id).exists()


def test_agents_mode_still_gives_agents_jwts(settings, cast, issue_user_token):
    with_options(settings, JWT_ACCESS_TOKENS="agents")
    _, claims = decode(issue_user_token("agent1"))
    assert claims["aud"] == cast["agent1"].uri


def test_client_ids_opt_single_applications_in(settings, token_endpoint, legacy):
    other = Legacy()
    with_options(settings, JWT_ACCESS_TOKENS="agents", JWT_CLIENT_IDS=[legacy.client_id])
    assert issue(token_endpoint, legacy).count(".") == 2
    assert issue(token_endpoint, other).count(".") == 0


def test_an_opaque_token_is_not_a_subject_token(settings, token_endpoint, legacy, exchange, cast):
    with_options(settings, JWT_ACCESS_TOKENS="agents")
    opaque = issue(token_endpoint, legacy)
    assert_oauth_error(exchange("agent1", opaque, cast["agent2"].uri), 400, "invalid_request")
