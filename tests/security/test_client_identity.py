"""No client can choose an identity that reads as a user's or a party's.

Over HTTP with DEBUG off (the test settings): self-service registration never lets
the registrant pick a ``client_id``; a token without a resource owner has a ``sub``
in the namespace reserved for clients; an application that is not a registered party
addresses its tokens only to the parties that allow-list it; an agent refuses an
act-less subject token that another client obtained; a rule "directly from a user
token" needs a user; introspection is decided by registered identity, never by a
client id that happens to equal a party's URI.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from oauth2_provider.models import get_application_model

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.models import AuditEvent, Party
from tests.conftest import ACCESS_TOKEN_TYPE, Agent
from tests.helpers import assert_oauth_error, decode, snapshot

# The documented namespace of client subjects (docs/security.md), spelled out on purpose.
CLIENT_NAMESPACE = "urn:delegation-idp:client:"
USER_EMAIL = "user@example.com"


def application(client_id: str | None = None, **fields: Any) -> tuple[Any, str]:
    """A confidential client-credentials application that is not a registered party."""
    secret = "s3cret-" + (client_id or "generated")
    values: dict[str, Any] = {
        "name": fields.pop("name", "legacy"),
        "client_type": "confidential",
        "authorization_grant_type": "client-credentials",
        "client_secret": secret,
        "hash_client_secret": True,
        **fields,
    }
    if client_id is not None:
        values["client_id"] = client_id
    return get_application_model().objects.create(**values), secret


def as_agent(app: Any, secret: str) -> Agent:
    return Agent("legacy", app.client_id, secret, "", "")


def last_event() -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    return event


def exchange_form(subject_token: str, audience: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
    }


# -- self-service registration -------------------------------------------------------------


def test_the_application_management_views_are_not_mounted(cast: Any, client: Any) -> None:
    client.force_login(cast.user)
    form = {
        "name": "mine",
        "client_id": USER_EMAIL,
        "client_secret": "x" * 32,
        "client_type": "confidential",
        "authorization_grant_type": "client-credentials",
        "algorithm": "",
    }
    assert client.get("/o/applications/register/").status_code == 404
    assert client.post("/o/applications/register/", form).status_code == 404
    assert client.get("/o/applications/").status_code == 404
    assert not get_application_model().objects.filter(client_id=USER_EMAIL).exists()


def test_dynamic_registration_is_off_by_default(cast: Any, client: Any, settings: Any) -> None:
    # The app's default (the example site turns it on, governed by registration rules).
    settings.DELEGATION_IDP = {k: v for k, v in settings.DELEGATION_IDP.items() if k != "CLIENT_REGISTRATION"}
    client.force_login(cast.user)
    metadata = {"client_name": "mine", "grant_types": ["client_credentials"]}
    response = client.post("/o/register/", json.dumps(metadata), content_type="application/json")
    assert response.status_code == 404


@pytest.mark.rfc("7591-3.2.1")
def test_dynamic_registration_never_takes_the_registrants_client_id(
    cast: Any, client: Any, settings: Any, token_endpoint: Any
) -> None:
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "CLIENT_REGISTRATION": "dcr"}
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "DCR_ENABLED": True}
    # A registration rule admitting clients without redirect URIs (hosts "*").
    from delegation_idp.models import RegistrationRule

    RegistrationRule.objects.create(via="dcr", hosts="*", max_scope="tasks.read")
    metadata = {
        "client_id": USER_EMAIL,
        "client_name": "mine",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    anonymous = client.post("/o/register/", json.dumps(metadata), content_type="application/json")
    assert anonymous.status_code == 401  # the default permission class wants a signed-in user
    client.force_login(cast.user)
    response = client.post("/o/register/", json.dumps(metadata), content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["client_id"] != USER_EMAIL
    assert not get_application_model().objects.filter(client_id=USER_EMAIL).exists()
    client.logout()
    # Its own token names it in the client namespace.
    registered = Agent("dcr", body["client_id"], body["client_secret"], "", "")
    token = token_endpoint({"grant_type": "client_credentials"}, registered)
    assert token.status_code == 200, token.content
    assert decode(token.json()["access_token"])[1]["sub"] == CLIENT_NAMESPACE + body["client_id"]


# -- sub of tokens without a resource owner ---------------------------------------------------


@pytest.mark.rfc("9068-2.2")
def test_a_client_named_like_a_user_gets_a_client_subject(cast: Any, token_endpoint: Any) -> None:
    app, secret = application(USER_EMAIL)  # an admin's mistake, or an old self-registration
    response = token_endpoint({"grant_type": "client_credentials"}, as_agent(app, secret))
    assert response.status_code == 200, response.content
    claims = decode(response.json()["access_token"])[1]
    assert claims["sub"] == CLIENT_NAMESPACE + USER_EMAIL
    assert claims["client_id"] == USER_EMAIL
    assert claims["aud"] == USER_EMAIL
    assert "act" not in claims


@pytest.mark.rfc("9068-2.2")
def test_an_agents_own_client_token_has_a_client_subject(cast: Any, token_endpoint: Any) -> None:
    agent = cast["agent1"]
    get_application_model().objects.filter(client_id=agent.client_id).update(
        authorization_grant_type="client-credentials"
    )
    response = token_endpoint({"grant_type": "client_credentials", "resource": agent.uri}, agent)
    assert response.status_code == 200, response.content
    claims = decode(response.json()["access_token"])[1]
    assert claims["sub"] == CLIENT_NAMESPACE + agent.client_id
    assert claims["aud"] == agent.uri


def test_a_resolver_that_yields_a_client_subject_is_refused(
    cast: Any, client: Any, settings: Any, token_endpoint: Any
) -> None:
    from tests.conftest import authorize_code, code_form

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "SUBJECT_RESOLVER": "tests.security.test_client_identity.client_looking_subject",
    }
    before = snapshot()
    response = token_endpoint(code_form(agent, code, verifier), agent)
    assert_oauth_error(response, 400, "invalid_grant")
    assert snapshot() == before
    event = last_event()
    assert (event.decision, event.reason) == ("denied", "subject_reserved")


def client_looking_subject(user: Any) -> str:
    return CLIENT_NAMESPACE + "agent1"


# -- audiences of applications that are not parties --------------------------------------------


@pytest.mark.rfc("8707-2")
def test_a_legacy_client_cannot_address_its_token_to_an_agent(cast: Any, token_endpoint: Any) -> None:
    app, secret = application(USER_EMAIL)
    before = snapshot()
    response = token_endpoint(
        {"grant_type": "client_credentials", "resource": cast["agent1"].uri}, as_agent(app, secret)
    )
    assert_oauth_error(response, 400, "invalid_target")
    assert snapshot() == before
    event = last_event()
    assert (event.decision, event.error, event.reason) == ("denied", "invalid_target", "resource_not_allowed")


@pytest.mark.rfc("8707-2")
def test_the_allow_list_holds_for_an_application_that_keeps_opaque_tokens(
    cast: Any, token_endpoint: Any, settings: Any
) -> None:
    """With ``JWT_ACCESS_TOKENS = "agents"`` (existing sites) a legacy application gets
    django-oauth-toolkit's opaque tokens, whose row still carries the ``resource`` as its
    audience: the allow-list applies to them as to JWTs."""
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "JWT_ACCESS_TOKENS": "agents"}
    app, secret = application()
    before = snapshot()
    form = {"grant_type": "client_credentials", "resource": cast["agent1"].uri}
    assert_oauth_error(token_endpoint(form, as_agent(app, secret)), 400, "invalid_target")
    assert snapshot() == before
    assert last_event().reason == "resource_not_allowed"
    Party.objects.get(uri=cast["agent1"].uri).clients.add(app)  # allow-listed: granted, opaque
    minted = token_endpoint(form, as_agent(app, secret))
    assert minted.status_code == 200, minted.content
    assert minted.json()["access_token"].count(".") != 2


@pytest.mark.rfc("8693-2.1")
def test_an_agent_refuses_an_actless_token_of_another_client(cast: Any, token_endpoint: Any) -> None:
    """Even allow-listed by an admin, the legacy client's token is its own: agent1 holding
    it means an unrecorded hop, and agent1 may not pass it on."""
    app, secret = application(USER_EMAIL)
    Party.objects.get(uri=cast["agent1"].uri).clients.add(app)
    minted = token_endpoint(
        {"grant_type": "client_credentials", "resource": cast["agent1"].uri}, as_agent(app, secret)
    )
    assert minted.status_code == 200, minted.content
    claims = decode(minted.json()["access_token"])[1]
    assert claims["aud"] == cast["agent1"].uri and claims["sub"] == CLIENT_NAMESPACE + USER_EMAIL
    before = snapshot()
    response = token_endpoint(
        exchange_form(minted.json()["access_token"], cast["agent2"].uri), cast["agent1"]
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert snapshot() == before
    event = last_event()
    assert (event.event, event.decision, event.reason) == (
        "token_exchange",
        "denied",
        "subject_foreign_client",
    )


@pytest.mark.rfc("8693-2.1")
def test_a_direct_from_user_rule_needs_a_user_behind_the_token(cast: Any, token_endpoint: Any) -> None:
    """agent1's own client-credentials token has no user: its rule "directly from a
    user token" does not let agent1 pass it on as if a user had asked."""
    agent = cast["agent1"]
    get_application_model().objects.filter(client_id=agent.client_id).update(
        authorization_grant_type="client-credentials"
    )
    own = token_endpoint({"grant_type": "client_credentials", "resource": agent.uri}, agent)
    assert own.status_code == 200, own.content
    before = snapshot()
    response = token_endpoint(exchange_form(own.json()["access_token"], cast["agent2"].uri), agent)
    assert_oauth_error(response, 400, "invalid_target")  # reads like no rule (docs/policy.md)
    assert snapshot() == before
    assert last_event().reason == "upstream_not_permitted"


@pytest.mark.rfc("8707-2")
def test_the_allow_list_is_policy_and_an_edit_applies_at_once(cast: Any, token_endpoint: Any) -> None:
    app, secret = application()
    rs = Party.objects.get(uri=cast.resource_server)
    form = {"grant_type": "client_credentials", "resource": cast.resource_server}
    assert token_endpoint(form, as_agent(app, secret)).status_code == 400
    rs.clients.add(app)
    assert token_endpoint(form, as_agent(app, secret)).status_code == 200
    assert token_endpoint(form, as_agent(app, secret)).status_code == 200  # from the policy cache
    rs.clients.remove(app)
    assert_oauth_error(token_endpoint(form, as_agent(app, secret)), 400, "invalid_target")
    rs.clients.add(app)
    Party.objects.filter(pk=rs.pk).update(enabled=False)
    assert_oauth_error(token_endpoint(form, as_agent(app, secret)), 400, "invalid_target")


# -- introspection ----------------------------------------------------------------------------


@pytest.mark.rfc("7662-4")
def test_a_client_named_like_a_party_cannot_introspect_its_tokens(
    cast: Any, chain: list[str], client: Any
) -> None:
    impostor, secret = application(cast["agent2"].uri)
    token = chain[1]  # requested by agent1, addressed to agent2
    assert decode(token)[1]["aud"] == cast["agent2"].uri

    def introspect(client_id: str, client_secret: str) -> dict[str, Any]:
        # client_secret_post: a client id with a colon cannot travel in HTTP Basic unencoded.
        form = {"token": token, "client_id": client_id, "client_secret": client_secret}
        response = client.post("/o/introspect/", form)
        assert response.status_code == 200, response.content
        return dict(response.json())

    assert introspect(impostor.client_id, secret) == {"active": False}
    agent2 = cast["agent2"]
    assert introspect(agent2.client_id, agent2.client_secret)["active"] is True  # the party itself may


# -- other identifiers a registrant or user chooses --------------------------------------------


@pytest.mark.rfc("6749-3.1.2")
def test_a_redirect_uri_must_be_the_registered_one(cast: Any, client: Any) -> None:
    from urllib.parse import urlencode

    agent = cast["agent1"]
    client.force_login(cast.user)
    params = {
        "response_type": "code",
        "client_id": agent.client_id,
        "redirect_uri": "https://agent1.example.com.evil.example/callback",
        "scope": cast.scope,
        "state": "xyz",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    response = client.post(f"/o/authorize/?{urlencode(params)}", {**params, "allow": "Authorize"})
    assert response.status_code == 400  # an error page, never a redirect carrying a code
    assert "Location" not in response


def test_an_application_name_is_never_an_identity(
    cast: Any, chain: list[str], client: Any, token_endpoint: Any
) -> None:
    """A display name that reads like a party's URI or a user's email grants nothing."""
    app, secret = application(name=cast["agent2"].uri)
    form = {"token": chain[1], "client_id": app.client_id, "client_secret": secret}
    assert client.post("/o/introspect/", form).json() == {"active": False}
    response = token_endpoint(
        {"grant_type": "client_credentials", "resource": cast["agent2"].uri}, as_agent(app, secret)
    )
    assert_oauth_error(response, 400, "invalid_target")
    own = token_endpoint({"grant_type": "client_credentials"}, as_agent(app, secret))
    assert decode(own.json()["access_token"])[1]["sub"] == CLIENT_NAMESPACE + app.client_id


def test_a_refusal_in_the_token_generator_at_the_authorization_endpoint_is_an_error_redirect(
    cast: Any, client: Any, settings: Any
) -> None:
    """The implicit grant issues its token at the authorization endpoint, outside the token
    endpoint's guard: a refusal raised while the token is built (here the reserved subject)
    reaches the client as an RFC 6749 section 4.2.2.1 error redirect, never a 500."""
    from oauth2_provider.models import get_application_model
    from oauth2_provider.settings import oauth2_settings

    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": False}
    oauth2_settings.reload()
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "SUBJECT_RESOLVER": "tests.security.test_client_identity.client_looking_subject",
    }
    try:
        app = get_application_model().objects.create(
            name="legacy browser app",
            client_type="public",
            authorization_grant_type="implicit",
            redirect_uris="https://legacy.example.com/callback",
            skip_authorization=True,
        )
        client.force_login(cast.user)
        before = snapshot()
        params = {
            "response_type": "token",
            "client_id": app.client_id,
            "redirect_uri": "https://legacy.example.com/callback",
            "scope": "tasks.read",
            "state": "s1",
        }
        response = client.get("/o/authorize/", params)
    finally:
        oauth2_settings.reload()
    assert response.status_code == 302, response.content[:300]
    location = response["Location"]
    assert location.startswith("https://legacy.example.com/callback")
    assert "error=invalid_grant" in location and "access_token" not in location
    assert snapshot() == before
