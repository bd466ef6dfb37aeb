"""The outside attack's reproductions replayed on a site installed as docs/installation.md
says: this existing site, with its own user model and Application model, its legacy
clients, and the seed's agents. Each fails in the documented way (docs/security.md): the
exact status and RFC error, ``no-store``, JSON, nothing issued, and the audit reason.

The registration and look-alike client steps are in ``test_existing_site.py``
(``test_no_user_can_register_a_client_or_pass_for_a_user``). This site keeps its legacy
web client on the password grant with check E020 silenced (installation.md's documented
escape hatch); what the docs promise for such a site is replayed below instead of the
refusal the example site gives.
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
from django.core import checks
from django.core.cache import cache
from django.test import override_settings
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.models import AuditEvent, TokenLineage

from .accounts.models import User
from .conftest import LEGACY_EMAIL, LEGACY_PASSWORD, basic

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ISSUER = "http://testserver"
ATTACKER = "203.0.113.99"
ELSEWHERE = "198.51.100.99"
pytestmark = pytest.mark.filterwarnings("ignore:The OAuth 2.0 resource owner password:DeprecationWarning")


@dataclass
class Cast:
    data: dict[str, Any]
    user: User  # the seed's user
    legacy_user: User
    web: tuple[str, str]  # the legacy web client (password grant): client id, secret
    service: tuple[str, str]  # the legacy service (client credentials)

    def agent(self, name: str) -> dict[str, Any]:
        return dict(self.data["agents"][name])

    def basic(self, name: str) -> str:
        agent = self.agent(name)
        return basic(agent["client_id"], agent["client_secret"])


def application(grant: str, client_id: str | None = None, user: Any = None) -> tuple[str, str]:
    Application = get_application_model()
    secret = secrets.token_urlsafe(24)
    fields: dict[str, Any] = {
        "name": f"legacy {grant}",
        "client_type": Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": grant,
        "client_secret": secret,
        "user": user,
    }
    if client_id:
        fields["client_id"] = client_id
    return Application.objects.create(**fields).client_id, secret


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def cast(db: Any) -> Cast:
    from example_project.demo_services.seed import seed

    data = seed()
    legacy_user = User.objects.create_user(LEGACY_EMAIL, LEGACY_PASSWORD)
    return Cast(
        data,
        User.objects.get(email="user@example.com"),
        legacy_user,
        application("password", user=legacy_user),
        application("client-credentials"),
    )


def issued() -> tuple[int, int]:
    return get_access_token_model().objects.count(), TokenLineage.objects.count()


def assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    body = dict(json.loads(response.content))
    assert body["error"] == error, body
    assert "access_token" not in body
    return body


def last_audit(event: str) -> tuple[str, str, str]:
    row = AuditEvent.objects.filter(event=event).order_by("-id").first()
    assert row is not None
    return row.decision, row.error, row.reason


@pytest.fixture
def post(client: Any):
    def send(path: str, data: dict[str, str], authorization: str | None = None, **extra: Any) -> Any:
        headers: dict[str, Any] = {"REMOTE_ADDR": ATTACKER, **extra}
        if authorization:
            headers["HTTP_AUTHORIZATION"] = authorization
        return client.post(path, urlencode(data), content_type="application/x-www-form-urlencoded", **headers)

    return send


def authorize(client: Any, cast: Cast, *, method: str = "POST", allow: bool = True, **overrides: Any) -> Any:
    agent1 = cast.agent("agent1")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": agent1["client_id"],
        "redirect_uri": agent1["redirect_uri"],
        "scope": cast.data["scope"],
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    params = {k: v for k, v in params.items() if v is not None}
    client.force_login(cast.user)
    url = f"/o/authorize/?{urlencode(params)}"
    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, {**params, **({"allow": "Authorize"} if allow else {})})
    client.logout()
    response.verifier = verifier
    return response


def location(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 302, response.content
    return parse_qs(urlsplit(response["Location"]).query)


def code_token(post: Any, cast: Cast, code: str, verifier: str) -> Any:
    agent1 = cast.agent("agent1")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": agent1["redirect_uri"],
        "code_verifier": verifier,
    }
    return post("/o/token/", form, cast.basic("agent1"))


def exchange(post: Any, cast: Cast, actor: str, token: str, audience: str) -> Any:
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
    }
    return post("/o/token/", form, cast.basic(actor))


def user_token(client: Any, post: Any, cast: Cast) -> str:
    response = authorize(client, cast)
    code = location(response)["code"][0]
    token = code_token(post, cast, code, response.verifier)
    assert token.status_code == 200, token.content
    return str(token.json()["access_token"])


# -- audience allow-list for every client (W2) ---------------------------------------------


@pytest.mark.parametrize("tokens", ["opaque", "jwt"])
def test_a_legacy_client_cannot_address_a_token_to_an_agent(cast, post, tokens, settings):
    client_id, secret = cast.service
    if tokens == "jwt":
        settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "JWT_CLIENT_IDS": [client_id]}
    before = issued()
    form = {"grant_type": "client_credentials", "resource": cast.agent("agent1")["uri"]}
    assert_oauth_error(post("/o/token/", form, basic(client_id, secret)), 400, "invalid_target")
    assert issued() == before
    assert last_audit("token") == ("denied", "invalid_target", "resource_not_allowed")


# -- introspection by registered identity (W3) ---------------------------------------------


def test_a_client_named_like_an_agent_cannot_introspect_its_tokens(cast, client, post):
    agent2 = cast.agent("agent2")
    impostor, secret = application("client-credentials", client_id=agent2["uri"])
    child = exchange(post, cast, "agent1", user_token(client, post, cast), agent2["uri"])
    assert child.status_code == 200, child.content
    token = child.json()["access_token"]

    form = {"token": token, "client_id": impostor, "client_secret": secret}
    answer = post("/o/introspect/", form)
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"active": False}
    own = post("/o/introspect/", {"token": token}, cast.basic("agent2"))
    assert own.json()["active"] is True


# -- lockouts keyed on the identity in the credentials (W4) --------------------------------


@pytest.mark.rfc("6749-2.3.1")
def test_guessing_an_agents_secret_behind_a_decoy_client_id_is_locked_out(cast, post):
    agent1 = cast.agent("agent1")
    form = {"grant_type": "client_credentials", "client_id": "decoy"}
    statuses = []
    for n in range(15):
        response = post("/o/token/", form, basic(agent1["client_id"], f"guess-{n}"))
        assert_oauth_error(response, 429 if response.status_code == 429 else 400, response.json()["error"])
        statuses.append((response.status_code, response.json()["error"]))
    assert statuses == [(400, "invalid_request")] * 10 + [(429, "slow_down")] * 5, statuses
    assert last_audit("token") == ("denied", "slow_down", "throttled")
    locked = post("/o/token/", {"grant_type": "client_credentials"}, cast.basic("agent1"))
    assert_oauth_error(locked, 429, "slow_down")
    assert int(locked["Retry-After"]) == 60
    # From its own address agent1 authenticates (and an agent has no client-credentials grant).
    own = post("/o/token/", {"grant_type": "client_credentials"}, cast.basic("agent1"), REMOTE_ADDR=ELSEWHERE)
    assert_oauth_error(own, 400, "unauthorized_client")


# -- throttle and lockout at revocation (W5) -----------------------------------------------


@pytest.mark.rfc("7009-2.1")
def test_guessing_a_legacy_client_secret_at_the_revocation_endpoint_is_locked_out(cast, post):
    client_id, _ = cast.web
    statuses = []
    for n in range(13):
        response = post("/o/revoke_token/", {"token": "x" * 40}, basic(client_id, f"guess-{n}"))
        expected = (401, "invalid_client") if response.status_code == 401 else (429, "slow_down")
        assert_oauth_error(response, *expected)
        statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429] * 3, statuses
    assert last_audit("revocation_request") == ("denied", "slow_down", "throttled")


# -- user sign-in lockout (W6) -------------------------------------------------------------


def test_twenty_wrong_passwords_at_the_admin_login_are_stopped(cast, client):
    def sign_in(password: str, address: str = ATTACKER) -> Any:
        return client.post(
            "/admin/login/", {"username": LEGACY_EMAIL, "password": password}, REMOTE_ADDR=address
        )

    statuses = [sign_in(f"wrong-{n}").status_code for n in range(20)]
    assert statuses == [200] * 5 + [429] * 15, statuses
    locked = sign_in(LEGACY_PASSWORD)
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == 900
    assert b"Too many failed sign-in attempts" in locked.content
    assert "_auth_user_id" not in client.session


@pytest.mark.rfc("6749-4.3.2")
def test_wrong_passwords_at_the_password_grant_are_counted(cast, post):
    client_id, secret = cast.web
    before = issued()
    statuses = []
    for n in range(8):
        form = {"grant_type": "password", "username": LEGACY_EMAIL, "password": f"wrong-{n}"}
        response = post("/o/token/", form, basic(client_id, secret))
        expected = (400, "invalid_grant") if response.status_code == 400 else (429, "slow_down")
        assert_oauth_error(response, *expected)
        statuses.append(response.status_code)
    assert statuses == [400] * 5 + [429] * 3, statuses
    form = {"grant_type": "password", "username": LEGACY_EMAIL, "password": LEGACY_PASSWORD}
    locked = post("/o/token/", form, basic(client_id, secret))
    assert_oauth_error(locked, 429, "slow_down")
    assert int(locked["Retry-After"]) == 900
    assert last_audit("token") == ("denied", "slow_down", "sign_in_locked")
    assert issued() == before


# -- PKCE plain (W7) -----------------------------------------------------------------------


@pytest.mark.rfc("9700-2.1.1")
@pytest.mark.parametrize("challenge_method", ["plain", None], ids=["plain", "omitted-means-plain"])
def test_plain_pkce_is_refused(cast, client, challenge_method):
    from oauth2_provider.models import get_grant_model

    response = authorize(
        client, cast, method="GET", code_challenge="x" * 43, code_challenge_method=challenge_method
    )
    assert response["Location"].startswith(cast.agent("agent1")["redirect_uri"])
    params = location(response)
    assert params["error"] == ["invalid_request"]
    assert params["iss"] == [ISSUER]
    assert "code" not in params
    assert not get_grant_model().objects.exists()
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]


# -- the password grant on a site that keeps it (W8) ----------------------------------------


@pytest.mark.rfc("9700-2.4")
def test_a_site_keeping_the_password_grant_is_told_and_advertises_it(cast, client, post):
    """installation.md: a site whose clients still need the password grant leaves the gate off
    and silences E020 knowingly. Then the check still reports it, the metadata lists the grant
    it accepts, no client can register itself for it, and its wrong passwords are counted
    (``test_wrong_passwords_at_the_password_grant_are_counted``)."""
    with override_settings(SILENCED_SYSTEM_CHECKS=[]):
        reported = {message.id for message in checks.run_checks()}
    assert "delegation_idp.E020" in reported
    assert "password" in client.get("/.well-known/oauth-authorization-server").json()["grant_types_supported"]

    client.force_login(cast.legacy_user)
    assert client.get("/o/applications/register/").status_code == 404
    dcr = client.post("/o/register/", {"grant_types": ["password"]}, content_type="application/json")
    assert (dcr.status_code, dcr.json()) == (404, {"error": "not_found"})
    client.logout()

    # The legacy client registered for it still works, as the escape hatch promises.
    client_id, secret = cast.web
    form = {"grant_type": "password", "username": LEGACY_EMAIL, "password": LEGACY_PASSWORD}
    granted = post("/o/token/", form, basic(client_id, secret))
    assert granted.status_code == 200, granted.content
    # An application registered for another grant cannot use it.
    other, other_secret = cast.service
    assert_oauth_error(post("/o/token/", form, basic(other, other_secret)), 400, "unauthorized_client")


# -- iss in authorization responses (W9) ------------------------------------------------------


@pytest.mark.rfc("9207-2")
@pytest.mark.parametrize("allow", [True, False], ids=["approved", "denied"])
def test_every_authorization_response_names_the_issuer(cast, client, allow):
    params = location(authorize(client, cast, allow=allow))
    assert params["iss"] == [ISSUER]
    if allow:
        assert "code" in params
    else:
        assert params["error"] == ["access_denied"]


# -- a replayed authorization code (W10) ------------------------------------------------------


@pytest.mark.rfc("6749-4.1.2")
@pytest.mark.rfc("6749-10.5")
def test_a_replayed_code_revokes_what_its_first_use_issued(cast, client, post):
    response = authorize(client, cast)
    code = location(response)["code"][0]
    first = code_token(post, cast, code, response.verifier)
    assert first.status_code == 200, first.content
    token = first.json()["access_token"]
    child = exchange(post, cast, "agent1", token, cast.agent("agent2")["uri"])
    assert child.status_code == 200, child.content

    before = TokenLineage.objects.count()
    assert_oauth_error(code_token(post, cast, code, response.verifier), 400, "invalid_grant")
    assert TokenLineage.objects.count() == before
    assert last_audit("token") == ("denied", "invalid_grant", "code_replayed")
    for holder, issued_token in (("agent1", token), ("agent2", child.json()["access_token"])):
        answer = post("/o/introspect/", {"token": issued_token}, cast.basic(holder))
        assert answer.json() == {"active": False}
    refreshed = post(
        "/o/token/",
        {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        cast.basic("agent1"),
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")


def test_a_replayed_code_revokes_a_legacy_applications_opaque_tokens(cast, client, post):
    """The site's own web application keeps opaque tokens (``JWT_ACCESS_TOKENS = "agents"``):
    a replay of its code revokes its access token and refresh token all the same."""
    app = get_application_model().objects.create(
        name="legacy web app (code flow)",
        client_type="confidential",
        authorization_grant_type="authorization-code",
        client_secret="legacy-code-secret",
        redirect_uris="https://legacy.example.com/cb",
    )
    credentials = basic(app.client_id, "legacy-code-secret")
    response = authorize(
        client, cast, client_id=app.client_id, redirect_uri="https://legacy.example.com/cb", scope="read"
    )
    code = location(response)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "https://legacy.example.com/cb",
        "code_verifier": response.verifier,
    }
    first = post("/o/token/", form, credentials)
    assert first.status_code == 200, first.content
    token, refresh_token = first.json()["access_token"], first.json()["refresh_token"]
    assert token.count(".") != 2  # django-oauth-toolkit's opaque token
    checksum = hashlib.sha256(token.encode()).hexdigest()
    assert get_access_token_model().objects.filter(token_checksum=checksum).exists()

    assert_oauth_error(post("/o/token/", form, credentials), 400, "invalid_grant")
    assert last_audit("token") == ("denied", "invalid_grant", "code_replayed")
    assert not get_access_token_model().objects.filter(token_checksum=checksum).exists()
    refresh = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    refreshed = post("/o/token/", refresh, credentials)
    assert_oauth_error(refreshed, 400, "invalid_grant")


# -- a foreign charset (W12) -------------------------------------------------------------------


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize(
    ("path", "event"),
    [("/o/token/", "token"), ("/o/introspect/", "introspection"), ("/o/revoke_token/", "revocation_request")],
)
def test_a_form_in_a_foreign_charset_is_a_json_invalid_request(cast, client, path, event):
    before = issued()
    body = b"grant_type=client_credentials" if event == "token" else b"token=" + b"x" * 40
    response = client.generic(
        "POST",
        path,
        body,
        content_type="application/x-www-form-urlencoded; charset=utf-16",
        HTTP_AUTHORIZATION=basic(*cast.service),
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert issued() == before
    assert last_audit(event)[2] == "bad_encoding"


# -- the challenge after a failed Basic authentication (W13) ------------------------------------


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize(
    ("path", "realm", "form"),
    [
        ("/o/token/", "token", {"grant_type": "client_credentials"}),
        ("/o/introspect/", "introspection", {"token": "x" * 40}),
        ("/o/revoke_token/", "revocation", {"token": "x" * 40}),
    ],
)
def test_a_failed_basic_authentication_is_challenged_as_basic(cast, post, path, realm, form):
    client_id, _ = cast.service
    before = issued()
    response = post(path, form, basic(client_id, "wrong-secret"))
    assert_oauth_error(response, 401, "invalid_client")
    assert response["WWW-Authenticate"] == f'Basic realm="{realm}"'
    assert issued() == before
