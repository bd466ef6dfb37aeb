"""An existing site adopts delegation_idp: its clients, tokens and users keep working.

Run on its own settings module: ``python -m pytest tests_existing_site
--ds=tests_existing_site.settings`` (the main suite runs it in a subprocess).
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.conf import idp_settings
from delegation_idp.models import Party, TokenLineage
from tests.helpers import decode

from .accounts.models import ClientApplication, User
from .conftest import LEGACY_EMAIL, LegacySite, authorize_code, basic

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# The legacy web client uses the password grant, as many existing sites still do.
pytestmark = pytest.mark.filterwarnings("ignore:The OAuth 2.0 resource owner password:DeprecationWarning")


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def is_jwt(token: str) -> bool:
    return token.count(".") == 2


def test_the_site_really_is_a_different_site():
    """Guards the premise: a custom user model without username, a swapped Application."""
    assert get_user_model() is User
    assert User.USERNAME_FIELD == "email"
    assert not any(f.name == "username" for f in User._meta.get_fields())
    assert get_application_model() is ClientApplication
    assert Party._meta.get_field("application").related_model is ClientApplication
    assert idp_settings.JWT_ACCESS_TOKENS == "agents"


def test_legacy_tokens_were_issued_before_delegation_idp_existed(legacy_site: LegacySite):
    assert not is_jwt(legacy_site.user_token["access_token"])
    assert not is_jwt(legacy_site.service_token["access_token"])
    assert "refresh_token" in legacy_site.user_token
    assert not any(t.startswith("delegation_idp_") for t in legacy_site.tables_before)
    assert TokenLineage.objects.count() == 0


def test_old_opaque_tokens_still_authenticate(client: Any, legacy_site: LegacySite):
    user_token = legacy_site.user_token["access_token"]
    response = client.get("/api/me/", **bearer(user_token))
    assert response.status_code == 200, response.content
    assert response.json() == {"email": LEGACY_EMAIL}

    response = client.get("/api/drf/me/", **bearer(user_token))
    assert response.status_code == 200, response.content
    assert response.json() == {"email": LEGACY_EMAIL, "client_id": legacy_site.web.application.client_id}

    response = client.get("/api/me/", **bearer(legacy_site.service_token["access_token"]))
    assert response.status_code == 200, response.content

    assert client.get("/api/me/", **bearer(user_token + "x")).status_code == 403


def test_old_opaque_tokens_introspect_for_their_own_client(client: Any, legacy_site: LegacySite):
    token = legacy_site.user_token["access_token"]
    response = client.post(
        "/o/introspect/", {"token": token}, HTTP_AUTHORIZATION=legacy_site.web.authorization
    )
    assert response.status_code == 200
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == legacy_site.web.application.client_id
    assert body["sub"] == LEGACY_EMAIL  # SUBJECT_RESOLVER email_subject on the custom user
    assert body["username"] == LEGACY_EMAIL
    # Another client learns nothing about it.
    response = client.post(
        "/o/introspect/", {"token": token}, HTTP_AUTHORIZATION=legacy_site.service.authorization
    )
    assert response.json() == {"active": False}


def test_old_refresh_token_still_refreshes_and_stays_opaque(
    client: Any, token_endpoint: Any, legacy_site: LegacySite
):
    response = token_endpoint(
        {"grant_type": "refresh_token", "refresh_token": legacy_site.user_token["refresh_token"]},
        legacy_site.web.authorization,
    )
    assert response.status_code == 200, response.content
    new = response.json()["access_token"]
    assert not is_jwt(new)
    assert new != legacy_site.user_token["access_token"]
    assert client.get("/api/me/", **bearer(new)).json() == {"email": LEGACY_EMAIL}
    assert TokenLineage.objects.count() == 0


def test_existing_clients_keep_opaque_tokens_unless_opted_in(token_endpoint: Any, legacy_site: LegacySite):
    service = legacy_site.service
    grant = {"grant_type": "client_credentials", "scope": "read"}

    response = token_endpoint(grant, service.authorization)
    assert response.status_code == 200, response.content
    assert not is_jwt(response.json()["access_token"])

    opted_in = {**idp_settings.user_settings, "JWT_CLIENT_IDS": [service.application.client_id]}
    with override_settings(DELEGATION_IDP=opted_in):
        token = token_endpoint(grant, service.authorization).json()["access_token"]
    assert is_jwt(token)
    _, claims = decode(token)
    assert claims["client_id"] == service.application.client_id
    assert claims["iss"] == "http://testserver"

    with override_settings(DELEGATION_IDP={**idp_settings.user_settings, "JWT_ACCESS_TOKENS": "all"}):
        assert is_jwt(token_endpoint(grant, service.authorization).json()["access_token"])

    # Back to the site's settings: opaque again.
    assert not is_jwt(token_endpoint(grant, service.authorization).json()["access_token"])


def test_revoking_an_old_token_still_works(client: Any, legacy_site: LegacySite):
    token = legacy_site.user_token["access_token"]
    response = client.post(
        "/o/revoke_token/", {"token": token}, HTTP_AUTHORIZATION=legacy_site.web.authorization
    )
    assert response.status_code == 200, response.content
    assert client.get("/api/me/", **bearer(token)).status_code == 403


def test_seed_chain_works_for_a_new_agent(client: Any, token_endpoint: Any, legacy_site: LegacySite):
    from example_project.demo_services.seed import seed

    data = seed()
    agents = data["agents"]
    for values in agents.values():
        assert isinstance(
            get_application_model().objects.get(client_id=values["client_id"]), ClientApplication
        )
    user = User.objects.get(email="user@example.com")

    agent1 = agents["agent1"]
    code, verifier = authorize_code(client, agent1["client_id"], agent1["redirect_uri"], user, data["scope"])
    response = token_endpoint(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": agent1["redirect_uri"],
            "code_verifier": verifier,
        },
        basic(agent1["client_id"], agent1["client_secret"]),
    )
    assert response.status_code == 200, response.content
    tokens = [response.json()["access_token"]]
    hops = [
        ("agent1", agents["agent2"]["uri"]),
        ("agent2", agents["mcp-server1"]["uri"]),
        ("mcp-server1", data["resource_server"]["uri"]),
    ]
    for name, audience in hops:
        agent = agents[name]
        response = token_endpoint(
            {
                "grant_type": TOKEN_EXCHANGE_GRANT,
                "subject_token": tokens[-1],
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": audience,
            },
            basic(agent["client_id"], agent["client_secret"]),
        )
        assert response.status_code == 200, response.content
        tokens.append(response.json()["access_token"])

    claims = [decode(token)[1] for token in tokens]
    assert {c["sub"] for c in claims} == {"user@example.com"}
    assert [c["aud"] for c in claims] == [agents["agent1"]["uri"]] + [aud for _, aud in hops]
    assert claims[3]["act"] == {
        "sub": agents["mcp-server1"]["uri"],
        "act": {"sub": agents["agent2"]["uri"], "act": {"sub": agents["agent1"]["uri"]}},
    }
    assert TokenLineage.objects.filter(user=user).count() == 4

    # The delegated tokens are addressed to other services: django-oauth-toolkit's own
    # resource protection on this site refuses them (their record is lineage, not its table).
    for token in tokens[1:]:
        assert client.get("/api/me/", **bearer(token)).status_code == 403
    assert not get_access_token_model().objects.filter(token__in=tokens[1:]).exists()
    # And the legacy token is untouched by all of that.
    assert client.get("/api/me/", **bearer(legacy_site.user_token["access_token"])).status_code == 200
    assert get_access_token_model().objects.filter(application=legacy_site.web.application).count() == 1


def test_system_checks_pass_for_the_existing_site(db: Any):
    out = StringIO()
    call_command("check", "--fail-level", "WARNING", stdout=out, stderr=out)
    assert "no issues" in out.getvalue()


def test_no_missing_migrations_with_swapped_models(db: Any):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_metadata_names_the_configured_issuer(client: Any, db: Any):
    body = json.loads(client.get("/.well-known/oauth-authorization-server").content)
    assert body["issuer"] == idp_settings.ISSUER
    assert TOKEN_EXCHANGE_GRANT in body["grant_types_supported"]


@pytest.mark.parametrize("field", ["users", "application"])
def test_delegation_models_point_at_the_sites_swapped_models(field: str):
    related = {
        "users": ("DelegationRule", User),
        "application": ("Party", ClientApplication),
    }[field]
    from django.apps import apps

    model = apps.get_model("delegation_idp", related[0])
    assert model._meta.get_field(field).related_model is related[1]


def test_no_user_can_register_a_client_or_pass_for_a_user(
    client: Any, token_endpoint: Any, legacy_site: LegacySite
) -> None:
    """A signed-in user finds no client registration; a client whose id is a user's email
    (registered before, or by an admin's mistake) can neither address a token to an agent
    nor produce one that reads as that user's."""
    from example_project.demo_services.seed import seed

    data = seed()
    agent1 = data["agents"]["agent1"]
    client.force_login(legacy_site.user)
    form = {"name": "mine", "client_id": LEGACY_EMAIL, "client_type": "confidential"}
    assert client.get("/o/applications/register/").status_code == 404
    assert client.post("/o/applications/register/", form).status_code == 404
    client.logout()

    Application = get_application_model()
    secret = "look-alike-secret"
    look_alike = Application.objects.create(
        client_id=LEGACY_EMAIL,
        name="Looks like Alice",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        department="ops",
    )
    grant = {"grant_type": "client_credentials", "resource": agent1["uri"]}
    with override_settings(DELEGATION_IDP={**idp_settings.user_settings, "JWT_CLIENT_IDS": [LEGACY_EMAIL]}):
        refused = token_endpoint(grant, basic(LEGACY_EMAIL, secret))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"

        Party.objects.get(uri=agent1["uri"]).clients.add(look_alike)  # even if an admin allows it
        minted = token_endpoint(grant, basic(LEGACY_EMAIL, secret))
        assert minted.status_code == 200, minted.content
        token = minted.json()["access_token"]
        assert decode(token)[1]["sub"] == "urn:delegation-idp:client:" + LEGACY_EMAIL

        exchanged = token_endpoint(
            {
                "grant_type": TOKEN_EXCHANGE_GRANT,
                "subject_token": token,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": data["agents"]["agent2"]["uri"],
            },
            basic(agent1["client_id"], agent1["client_secret"]),
        )
    assert exchanged.status_code == 400 and exchanged.json()["error"] == "invalid_request"
    assert not TokenLineage.objects.filter(act__isnull=False).exists()
