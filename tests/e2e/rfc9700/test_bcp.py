"""RFC 9700 (OAuth 2.0 Security BCP) at the authorization and token endpoints, RFC 9207's
``iss`` authorization-response parameter, and metadata (RFC 8414) that says what the
server really does: each field is checked against the behaviour it describes."""

from __future__ import annotations

from typing import Any

import pytest
from oauth2_provider.models import get_application_model, get_grant_model

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.models import AuditEvent
from example_project.demo_services.seed import PASSWORD
from tests.conftest import Agent
from tests.helpers import assert_oauth_error, snapshot

from .conftest import query

ISSUER = "http://testserver"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def register(grant: str, *, redirect_uri: str = "") -> Agent:
    """A confidential application of the kind a self-registering developer creates."""
    Application = get_application_model()
    app = Application.objects.create(
        name=f"app-{grant}",
        client_type="confidential",
        authorization_grant_type=grant,
        client_secret="app-secret",
        hash_client_secret=True,
        redirect_uris=redirect_uri,
    )
    return Agent(app.name, app.client_id, "app-secret", "", redirect_uri)


# -- PKCE: S256 only ------------------------------------------------------------------


@pytest.mark.rfc("9700-2.1.1")
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("challenge_method", ["plain", None], ids=["plain", "omitted-means-plain"])
def test_plain_pkce_is_refused_at_the_authorization_endpoint(cast, authorize, method, challenge_method):
    agent = cast["agent1"]
    response = authorize(
        agent, method=method, code_challenge="x" * 43, code_challenge_method=challenge_method
    )
    assert response.status_code == 302, response.content
    assert response["Location"].startswith(agent.redirect_uri)
    params = query(response["Location"])
    assert params["error"] == ["invalid_request"]
    assert params["state"] == ["xyz"]
    assert "code" not in params
    assert not get_grant_model().objects.exists()


@pytest.mark.rfc("9700-2.1.1")
def test_s256_pkce_is_accepted(cast, authorize):
    response = authorize(cast["agent1"])
    assert response.status_code == 302
    assert "code" in query(response["Location"])


# -- no resource owner password credentials grant ------------------------------------


@pytest.mark.rfc("9700-2.4")
def test_the_password_grant_is_refused_even_to_a_client_registered_for_it(cast, token_endpoint):
    app = register("password")
    before, events = snapshot(), AuditEvent.objects.count()
    response = token_endpoint(
        {"grant_type": "password", "username": cast.data["user"]["username"], "password": PASSWORD},
        app,
    )
    assert_oauth_error(response, 400, "unauthorized_client")
    assert snapshot() == before
    assert AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.decision, event.grant_type, event.error) == ("denied", "password", "unauthorized_client")


# -- RFC 9207: iss in every authorization response --------------------------------------


@pytest.mark.rfc("9207-2")
def test_iss_is_in_a_successful_authorization_response(cast, authorize):
    response = authorize(cast["agent1"])
    params = query(response["Location"])
    assert "code" in params
    assert params["iss"] == [ISSUER]


@pytest.mark.rfc("9207-2")
@pytest.mark.parametrize(
    ("label", "method", "overrides", "allow", "error"),
    [
        ("user-denies", "POST", {}, False, "access_denied"),
        ("unknown-scope", "GET", {"scope": "no.such.scope"}, True, "invalid_scope"),
        ("plain-pkce", "GET", {"code_challenge_method": "plain"}, True, "invalid_request"),
        ("plain-pkce-at-consent", "POST", {"code_challenge_method": "plain"}, True, "invalid_request"),
        ("unsupported-response-type", "GET", {"response_type": "token"}, True, "unauthorized_client"),
    ],
)
def test_iss_is_in_an_error_authorization_response(cast, authorize, label, method, overrides, allow, error):
    agent = cast["agent1"]
    response = authorize(agent, method=method, allow=allow, **overrides)
    assert response.status_code == 302, response.content
    assert response["Location"].startswith(agent.redirect_uri)
    params = query(response["Location"])
    assert params["error"] == [error]
    assert params["iss"] == [ISSUER]


@pytest.mark.rfc("9207-2")
def test_iss_is_the_provider_issuer_whatever_host_the_request_named(cast, authorize, settings):
    settings.ALLOWED_HOSTS = ["testserver", "idp-alias.example.com"]
    agent = cast["agent1"]
    from django.test import Client

    other = Client(HTTP_HOST="idp-alias.example.com")
    other.force_login(cast.user)
    response = other.get(
        "/o/authorize/",
        {
            "response_type": "code",
            "client_id": agent.client_id,
            "redirect_uri": agent.redirect_uri,
            "scope": "no.such.scope",
            "state": "s",
        },
    )
    assert query(response["Location"])["iss"] == [ISSUER]


# -- metadata against behaviour ------------------------------------------------------------


def metadata(client: Any) -> dict[str, Any]:
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    return dict(response.json())


def pkce_method_accepted(authorize: Any, agent: Agent, method: str) -> bool:
    response = authorize(agent, code_challenge_method=method, code_challenge="y" * 43)
    return "code" in query(response["Location"])


def iss_sent(authorize: Any, agent: Agent) -> bool:
    return "iss" in query(authorize(agent)["Location"])


def grant_accepted(grant: str, cast: Any, client: Any, token_endpoint: Any) -> bool:
    """Whether the server takes ``grant`` from a client registered for it: any answer but
    ``unsupported_grant_type`` / ``unauthorized_client`` (a bad code or token is still
    an answer of that grant)."""
    if grant == "implicit":
        app = register("implicit", redirect_uri="https://implicit.example.com/cb")
        client.force_login(cast.user)
        response = client.get(
            "/o/authorize/",
            {
                "response_type": "token",
                "client_id": app.client_id,
                "redirect_uri": app.redirect_uri,
                "state": "s",
            },
        )
        client.logout()
        if response.status_code == 200:
            return True  # the consent page: the request was valid
        return query(response["Location"]).get("error") not in (
            ["unauthorized_client"],
            ["unsupported_response_type"],
        )
    forms: dict[str, tuple[str, dict[str, str]]] = {
        "authorization_code": (
            "authorization-code",
            {"code": "not-a-code", "redirect_uri": "https://a.example.com/cb", "code_verifier": "v" * 43},
        ),
        "refresh_token": ("authorization-code", {"refresh_token": "not-a-refresh-token"}),
        "client_credentials": ("client-credentials", {}),
        "password": ("password", {"username": cast.data["user"]["username"], "password": PASSWORD}),
        DEVICE_GRANT: (DEVICE_GRANT, {"device_code": "not-a-device-code"}),
    }
    if grant == TOKEN_EXCHANGE_GRANT:
        agent, extra = (
            cast["agent1"],
            {"subject_token": "x.y.z", "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
        )
    else:
        kind, extra = forms[grant]
        agent = register(kind, redirect_uri="https://a.example.com/cb")
    response = token_endpoint({"grant_type": grant, **extra}, agent)
    assert response.status_code != 500, response.content
    return response.json().get("error") not in ("unsupported_grant_type", "unauthorized_client")


GRANTS = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
    DEVICE_GRANT,
    TOKEN_EXCHANGE_GRANT,
]


@pytest.mark.rfc("8414-2")
@pytest.mark.parametrize("site", ["example-site", "gates-off"])
def test_metadata_says_what_the_server_does(site, cast, client, authorize, token_endpoint, request):
    if site == "gates-off":
        request.getfixturevalue("gates_off")
    data = metadata(client)
    agent = cast["agent1"]
    for method in ("plain", "S256"):
        assert (method in data["code_challenge_methods_supported"]) == pkce_method_accepted(
            authorize, agent, method
        ), method
    assert bool(data.get("authorization_response_iss_parameter_supported")) == iss_sent(authorize, agent)
    for grant in GRANTS:
        accepted = grant_accepted(grant, cast, client, token_endpoint)
        assert (grant in data["grant_types_supported"]) == accepted, (grant, accepted)
    implicit = grant_accepted("implicit", cast, client, token_endpoint)
    assert ("token" in data["response_types_supported"]) == implicit


def test_the_example_site_refuses_what_rfc_9700_forbids(client, db):
    data = metadata(client)
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["authorization_response_iss_parameter_supported"] is True
    assert "password" not in data["grant_types_supported"]
    assert "implicit" not in data["grant_types_supported"]
    assert data["response_types_supported"] == ["code"]
