"""The outside black-box attack replayed on the example site as deployed: gunicorn, DEBUG
off, the production settings module, the operator's environment. Every request is real
HTTP from this process, as an outside attacker sends it; a step that needs a signed-in user
signs in at the site's own login page. Each test replays one reproduction of the security
issue and asserts that it now fails in the documented way (docs/security.md): the exact
status and RFC error, ``Cache-Control: no-store``, JSON, nothing issued, and the audit
record's reason (read from the site's own SQLite file, never through the site).

The attacker connects from loopback addresses of their own (``127.0.0.66`` ...), so the
lockouts they trigger stay at their address, as they would on the internet, and never
touch the requests the setup sends from ``127.0.0.1``.

Concurrent writes on SQLite (parallel code redemptions, a revocation during concurrent
exchanges) are replayed over HTTP against gunicorn by ``test_concurrent_writes.py``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from example_project.demo_services.management.commands.demo import authorization_code, user_token
from tests.conftest import free_port
from tests.helpers import decode
from tests.procs import cluster, manage, seed, site_env

pytestmark = pytest.mark.integration

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
CLIENT_NAMESPACE = "urn:delegation-idp:client:"
SETUP_SECRET = "operator-set-secret-0123456789"

# What an operator (or an admin's mistake, or a registration made before the fix) left in
# the site: the clients the reproductions start from. An outside attacker cannot
# create any of them any more; the first test shows that.
OPERATOR_SETUP = f"""
import json
from django.contrib.auth import get_user_model
from oauth2_provider.models import get_application_model

User, Application = get_user_model(), get_application_model()
User.objects.create_user("admin", "admin@example.com", "admin-password-not-guessable", is_staff=True)


def client(name, grant, client_id=None):
    fields = dict(
        name=name,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant,
        client_secret="{SETUP_SECRET}",
    )
    if client_id:
        fields["client_id"] = client_id
    return Application.objects.create(**fields).client_id


print(json.dumps({{
    "look_alike": client("Looks like the admin", "client-credentials", "admin@example.com"),
    "legacy": client("Legacy service", "client-credentials"),
    "impostor": client("Looks like agent2", "client-credentials", "https://agent2.example.com"),
    "password": client("Password app", "password"),
}}))
"""


@dataclass
class Site:
    url: str
    database: Path
    cast: dict[str, Any]
    clients: dict[str, str]  # look_alike, legacy, impostor, password -> client_id

    def agent(self, name: str) -> dict[str, Any]:
        return dict(self.cast["agents"][name])

    def basic(self, name: str) -> tuple[str, str]:
        agent = self.agent(name)
        return agent["client_id"], agent["client_secret"]

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.database, timeout=10)) as db:
            return db.execute(sql, args).fetchall()

    def issued(self) -> tuple[int, int]:
        """(access-token rows, lineage rows): a refusal must leave both unchanged."""
        return (
            self.query("SELECT count(*) FROM oauth2_provider_accesstoken")[0][0],
            self.query("SELECT count(*) FROM delegation_idp_tokenlineage")[0][0],
        )

    def audit_mark(self) -> int:
        return int(self.query("SELECT coalesce(max(id), 0) FROM delegation_idp_auditevent")[0][0])

    def audited(self, since: int, event: str) -> list[tuple[str, str, str]]:
        """(decision, error, reason) of the audit records ``event`` written after ``since``."""
        deadline = time.monotonic() + 5
        while True:
            rows = self.query(
                "SELECT decision, error, reason FROM delegation_idp_auditevent"
                " WHERE id > ? AND event = ? ORDER BY id",
                since,
                event,
            )
            if rows or time.monotonic() > deadline:
                return [(str(d), str(e), str(r)) for d, e, r in rows]
            time.sleep(0.1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("attack-replay")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(
        tmp_path,
        issuer=issuer,
        # What an operator sets in production: the documented throttle rates, stated
        # explicitly (the test settings turn throttling off; a real site has it on), and the
        # keyed hash for agent secrets (docs/performance.md, check W103).
        IDP_THROTTLE_RATES="client=600/min,address=1200/min",
        IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32),
    )
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        clients = json.loads(manage(env, "shell", "-c", OPERATOR_SETUP).stdout.strip().splitlines()[-1])
        procs.gunicorn(port)
        yield Site(issuer, tmp_path / "site.sqlite3", cast, clients)


_addresses = iter(range(66, 250))


def attacker(site: Site, **kwargs: Any) -> httpx.Client:
    """An HTTP client from an address of its own (a loopback address nobody else uses)."""
    address = f"127.0.0.{next(_addresses)}"
    return httpx.Client(
        base_url=site.url,
        transport=httpx.HTTPTransport(local_address=address),
        timeout=30,
        follow_redirects=False,
        **kwargs,
    )


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The RFC's JSON error with the exact code and ``no-store``, never HTML, no token."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert response.headers["cache-control"] == "no-store"
    body = dict(response.json())
    assert body["error"] == error, body
    assert "access_token" not in body and "refresh_token" not in body
    return body


def sign_in(browser: httpx.Client, username: str, password: str) -> httpx.Response:
    """One sign-in at the site's login page, with its CSRF token, as a browser does it."""
    if "csrftoken" not in browser.cookies:
        assert browser.get("/accounts/login/").status_code == 200
    return browser.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            "next": "/",
        },
        headers={"Referer": f"{browser.base_url}accounts/login/"},
    )


@contextmanager
def signed_in_browser(site: Site) -> Iterator[httpx.Client]:
    with attacker(site) as browser:
        response = sign_in(browser, site.cast["user"]["username"], site.cast["user"]["password"])
        assert response.status_code == 302, response.text[:300]
        yield browser


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_query(site: Site, **overrides: str | None) -> str:
    agent1 = site.agent("agent1")
    query = {
        "response_type": "code",
        "client_id": agent1["client_id"],
        "redirect_uri": agent1["redirect_uri"],
        "scope": site.cast["scope"],
        "state": "replay-state",
        "code_challenge": pkce()[1],
        "code_challenge_method": "S256",
        **overrides,
    }
    return urlencode({k: v for k, v in query.items() if v is not None})


def consent_form(page: httpx.Response) -> dict[str, str]:
    assert page.status_code == 200, page.text[:300]
    return {
        k: html.unescape(v)
        for k, v in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text)
    }


def redirect_params(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 302, response.text[:300]
    return parse_qs(urlsplit(response.headers["location"]).query)


def exchange(site: Site, actor: str, token: str, audience: str) -> httpx.Response:
    return httpx.post(
        f"{site.url}/o/token/",
        data={
            "grant_type": GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS,
            "audience": audience,
        },
        auth=site.basic(actor),
        timeout=30,
    )


def introspect(site: Site, token: str, client_id: str, client_secret: str) -> httpx.Response:
    # client_secret_post: a client id with a colon does not travel in HTTP Basic unencoded.
    return httpx.post(
        f"{site.url}/o/introspect/",
        data={"token": token, "client_id": client_id, "client_secret": client_secret},
        timeout=30,
    )


def register(site: Site, browser: httpx.Client) -> list[int]:
    """A signed-in user tries django-oauth-toolkit's registration page and the RFC 7591
    endpoint with a chosen ``client_id``; returns the statuses."""
    form = {
        "name": "mine",
        "client_id": "admin@example.com",
        "client_type": "confidential",
        "authorization_grant_type": "client-credentials",
        "csrfmiddlewaretoken": browser.cookies["csrftoken"],
    }
    headers = {"Referer": f"{site.url}/o/applications/register/"}
    page = browser.get("/o/applications/register/")
    posted = browser.post("/o/applications/register/", data=form, headers=headers)
    dcr = browser.post("/o/register/", json={"client_name": "mine", "client_id": "admin@example.com"})
    # The example site turns RFC 7591 on, governed: no registration rule admits this
    # registrant (and one that did would get a client id the server picks).
    assert dcr.json()["error"] == "access_denied"
    return [page.status_code, posted.status_code, dcr.status_code]


# -- self-service registration and client subjects (W1) -----------------------------------


def test_a_signed_in_user_cannot_register_a_client_or_mint_a_token_that_reads_as_a_user(site):
    look_alike = site.clients["look_alike"]
    assert look_alike == "admin@example.com"
    before = site.query("SELECT count(*) FROM oauth2_provider_application")

    # 1. A signed-in user finds no registration page, and RFC 7591 registration refuses them.
    with signed_in_browser(site) as browser:
        registered = register(site, browser)
    assert registered == [404, 404, 401]
    assert site.query("SELECT count(*) FROM oauth2_provider_application") == before

    # 2. A client whose id is a user's email (left by an admin's mistake) asks for a token
    #    addressed to agent1: refused, nothing issued.
    issued, mark = site.issued(), site.audit_mark()
    with attacker(site, auth=(look_alike, SETUP_SECRET)) as http:
        refused = http.post(
            "/o/token/", data={"grant_type": "client_credentials", "resource": site.agent("agent1")["uri"]}
        )
        assert_oauth_error(refused, 400, "invalid_target")
        assert site.issued() == issued
        assert ("denied", "invalid_target", "resource_not_allowed") in site.audited(mark, "token")

        # Its own token reads as a client's, never as the admin's.
        own = http.post("/o/token/", data={"grant_type": "client_credentials"})
    assert own.status_code == 200, own.text
    claims = decode(own.json()["access_token"])[1]
    assert claims["sub"] == CLIENT_NAMESPACE + "admin@example.com"
    assert "act" not in claims

    # 3. agent1's ordinary exchange of it to agent2 is refused.
    issued = site.issued()
    exchanged = exchange(site, "agent1", own.json()["access_token"], site.agent("agent2")["uri"])
    assert_oauth_error(exchanged, 400, "invalid_request")
    assert site.issued() == issued
    assert not site.query("SELECT count(*) FROM delegation_idp_tokenlineage WHERE act IS NOT NULL")[0][0]


# -- audience allow-list for every client (W2) ---------------------------------------------


def test_a_legacy_client_cannot_address_a_token_to_an_agent(site):
    agent1 = site.agent("agent1")
    legacy = site.clients["legacy"]
    issued, mark = site.issued(), site.audit_mark()
    with attacker(site, auth=(legacy, SETUP_SECRET)) as http:
        form = {"grant_type": "client_credentials", "resource": agent1["uri"]}
        response = http.post("/o/token/", data=form)
        assert_oauth_error(response, 400, "invalid_target")
        assert site.issued() == issued
        assert ("denied", "invalid_target", "resource_not_allowed") in site.audited(mark, "token")

        # ``audience`` is the token exchange's parameter: this grant ignores it, and the
        # token is the client's own, addressed to itself, which agent1 cannot take onwards.
        ignored = http.post("/o/token/", data={"grant_type": "client_credentials", "audience": agent1["uri"]})
    assert ignored.status_code == 200, ignored.text
    claims = decode(ignored.json()["access_token"])[1]
    assert (claims["aud"], claims["sub"]) == (legacy, CLIENT_NAMESPACE + legacy)
    issued = site.issued()
    onwards = exchange(site, "agent1", ignored.json()["access_token"], site.agent("agent2")["uri"])
    assert_oauth_error(onwards, 400, "invalid_request")
    assert site.issued() == issued


# -- introspection by registered identity (W3) ---------------------------------------------


def test_a_client_named_like_an_agent_cannot_introspect_its_tokens(site):
    impostor = site.clients["impostor"]
    agent2 = site.agent("agent2")
    assert impostor == agent2["uri"]
    child = exchange(site, "agent1", user_token(site.url, site.cast), agent2["uri"])
    assert child.status_code == 200, child.text
    token = child.json()["access_token"]
    assert decode(token)[1]["aud"] == agent2["uri"]

    answer = introspect(site, token, impostor, SETUP_SECRET)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {"active": False}  # no sub, scope or act chain
    # The party itself still may.
    assert introspect(site, token, *site.basic("agent2")).json()["active"] is True


# -- lockouts keyed on the identity in the credentials (W4) --------------------------------


@pytest.mark.rfc("6749-2.3.1")
def test_guessing_an_agents_secret_behind_a_decoy_client_id_is_locked_out(site):
    agent1 = site.agent("agent1")
    issued = site.issued()
    statuses = []
    with attacker(site) as http:
        for n in range(15):
            response = http.post(
                "/o/token/",
                data={"grant_type": "client_credentials", "client_id": "decoy"},
                auth=(agent1["client_id"], f"guess-{n}"),
            )
            if response.status_code == 429:
                assert_oauth_error(response, 429, "slow_down")
                assert int(response.headers["retry-after"]) > 0
            else:
                # The decoy beside Basic is refused and counted against agent1.
                assert_oauth_error(response, 400, "invalid_request")
            statuses.append(response.status_code)
        # CLIENT_AUTH_FAILURE_LIMIT (10) counted against agent1 itself, then 429.
        assert statuses == [400] * 10 + [429] * 5, statuses
        # Also without the decoy, and even with agent1's own secret, from this address.
        locked = http.post("/o/token/", data={"grant_type": "client_credentials"}, auth=site.basic("agent1"))
        assert_oauth_error(locked, 429, "slow_down")
        assert int(locked.headers["retry-after"]) == 60
    assert site.issued() == issued
    # agent1 from its own address is not locked out by someone else's guessing: it
    # authenticates (an agent has no client-credentials grant, so the grant is refused).
    with attacker(site) as elsewhere:
        own = elsewhere.post(
            "/o/token/", data={"grant_type": "client_credentials"}, auth=site.basic("agent1")
        )
    assert_oauth_error(own, 400, "unauthorized_client")


# -- throttle and lockout at revocation (W5) -----------------------------------------------


@pytest.mark.rfc("7009-2.1")
@pytest.mark.parametrize("kind", ["agent", "legacy"])
def test_guessing_a_client_secret_at_the_revocation_endpoint_is_locked_out(site, kind):
    client_id = site.agent("agent1")["client_id"] if kind == "agent" else site.clients["legacy"]
    mark = site.audit_mark()
    statuses = []
    with attacker(site) as http:
        for n in range(13):
            response = http.post("/o/revoke_token/", data={"token": "x" * 40}, auth=(client_id, f"guess-{n}"))
            if response.status_code == 401:
                assert_oauth_error(response, 401, "invalid_client")
                assert response.headers["www-authenticate"] == 'Basic realm="revocation"'
            else:
                assert_oauth_error(response, 429, "slow_down")
                assert int(response.headers["retry-after"]) > 0
            statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429] * 3, statuses
    records = site.audited(mark, "revocation_request")
    assert len(records) == 13
    assert {decision for decision, _, _ in records} == {"denied"}
    assert records[-1][1:] == ("slow_down", "throttled")


# -- user sign-in lockout (W6) -------------------------------------------------------------


def test_twenty_wrong_passwords_at_the_login_page_are_stopped(site):
    user = site.cast["user"]
    statuses = []
    with attacker(site) as http:
        for n in range(20):
            response = sign_in(http, user["username"], f"wrong-{n}")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) == 900
                assert response.headers["cache-control"].startswith("no-store")
                assert "Too many failed sign-in attempts" in response.text
        # SIGN_IN_FAILURE_LIMIT (5) wrong passwords get the form's error, then 429.
        assert statuses == [200] * 5 + [429] * 15, statuses
        # The right password does not get in from this address during the lockout ...
        right = sign_in(http, user["username"], user["password"])
        assert right.status_code == 429
        assert "sessionid" not in http.cookies
    # ... while the user, from their own address, signs in.
    with attacker(site) as own:
        assert sign_in(own, user["username"], user["password"]).status_code == 302
        assert "sessionid" in own.cookies


def test_password_spraying_from_one_address_is_stopped(site):
    statuses = []
    with attacker(site) as http:
        for n in range(12):
            statuses.append(sign_in(http, f"someone-{n}", "Winter2024!").status_code)
        # SIGN_IN_ADDRESS_FAILURE_LIMIT (10) wrong passwords, any usernames, then the address.
        assert statuses == [200] * 10 + [429] * 2, statuses
        user = site.cast["user"]
        assert sign_in(http, user["username"], user["password"]).status_code == 429


# -- PKCE plain (W7) -----------------------------------------------------------------------


@pytest.mark.rfc("9700-2.1.1")
@pytest.mark.parametrize("method", ["plain", None], ids=["plain", "omitted-means-plain"])
def test_plain_pkce_is_refused_before_the_consent_page(site, method):
    issued = site.issued()
    grants = site.query("SELECT count(*) FROM oauth2_provider_grant")
    with signed_in_browser(site) as browser:
        response = browser.get(
            f"/o/authorize/?{authorize_query(site, code_challenge='x' * 43, code_challenge_method=method)}"
        )
    assert response.headers["location"].startswith(site.agent("agent1")["redirect_uri"])
    params = redirect_params(response)
    assert params["error"] == ["invalid_request"]
    assert params["state"] == ["replay-state"]
    assert params["iss"] == [site.url]
    assert "code" not in params
    assert site.query("SELECT count(*) FROM oauth2_provider_grant") == grants
    assert site.issued() == issued
    metadata = httpx.get(f"{site.url}/.well-known/oauth-authorization-server").json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]


# -- password grant (W8) ---------------------------------------------------------------------


@pytest.mark.rfc("9700-2.4")
def test_the_password_grant_is_refused_and_not_advertised(site):
    user = site.cast["user"]
    issued, mark = site.issued(), site.audit_mark()
    with attacker(site, auth=(site.clients["password"], SETUP_SECRET)) as http:
        response = http.post(
            "/o/token/",
            data={"grant_type": "password", "username": user["username"], "password": user["password"]},
        )
    assert_oauth_error(response, 400, "unauthorized_client")
    assert site.issued() == issued
    assert [(d, e) for d, e, _ in site.audited(mark, "token")] == [("denied", "unauthorized_client")]
    metadata = httpx.get(f"{site.url}/.well-known/oauth-authorization-server").json()
    assert "password" not in metadata["grant_types_supported"]
    # And no client can register itself for it (RFC 7591 registration refuses anonymous
    # registrants, and the password grant is no grant it would register).
    before = site.query("SELECT count(*) FROM oauth2_provider_application")
    with attacker(site) as http:
        assert http.post("/o/register/", json={"grant_types": ["password"]}).status_code == 401
    assert site.query("SELECT count(*) FROM oauth2_provider_application") == before


# -- iss in authorization responses (W9) ------------------------------------------------------


@pytest.mark.rfc("9207-2")
@pytest.mark.parametrize("allow", [True, False], ids=["approved", "denied"])
def test_every_authorization_response_names_the_issuer(site, allow):
    with signed_in_browser(site) as browser:
        form = consent_form(browser.get(f"/o/authorize/?{authorize_query(site)}"))
        form.pop("allow", None)  # the consent page's own button
        if allow:
            form["allow"] = "Authorize"
        form["csrfmiddlewaretoken"] = browser.cookies["csrftoken"]
        response = browser.post("/o/authorize/", data=form, headers={"Referer": f"{site.url}/o/authorize/"})
    params = redirect_params(response)
    assert params["iss"] == [site.url]
    assert params["state"] == ["replay-state"]
    if allow:
        assert "code" in params
    else:
        assert params["error"] == ["access_denied"]


# -- a replayed authorization code (W10) ------------------------------------------------------


@pytest.mark.rfc("6749-4.1.2")
@pytest.mark.rfc("6749-10.5")
def test_a_replayed_code_revokes_what_its_first_use_issued(site):
    agent1 = site.agent("agent1")
    code, verifier = authorization_code(site.url, site.cast)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": agent1["redirect_uri"],
        "code_verifier": verifier,
    }
    first = httpx.post(f"{site.url}/o/token/", data=form, auth=site.basic("agent1"), timeout=30)
    assert first.status_code == 200, first.text
    token, refresh = first.json()["access_token"], first.json()["refresh_token"]
    child = exchange(site, "agent1", token, site.agent("agent2")["uri"])
    assert child.status_code == 200, child.text
    assert introspect(site, token, *site.basic("agent1")).json()["active"] is True

    issued, mark = site.issued(), site.audit_mark()
    with attacker(site, auth=site.basic("agent1")) as http:
        assert_oauth_error(http.post("/o/token/", data=form), 400, "invalid_grant")
    # Nothing new issued (the revoked access tokens' rows are deleted, their lineage kept).
    tokens, rows = site.issued()
    assert tokens <= issued[0] and rows == issued[1]
    assert ("denied", "invalid_grant", "code_replayed") in site.audited(mark, "token")

    assert introspect(site, token, *site.basic("agent1")).json() == {"active": False}
    assert introspect(site, child.json()["access_token"], *site.basic("agent2")).json() == {"active": False}
    refreshed = httpx.post(
        f"{site.url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        auth=site.basic("agent1"),
        timeout=30,
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")


# -- a foreign charset (W12) -------------------------------------------------------------------


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize(
    ("path", "event"),
    [("/o/token/", "token"), ("/o/introspect/", "introspection"), ("/o/revoke_token/", "revocation_request")],
)
@pytest.mark.parametrize("charset", ["utf-16", "latin-9x"])
def test_a_form_in_a_foreign_charset_is_a_json_invalid_request(site, path, event, charset):
    issued, mark = site.issued(), site.audit_mark()
    body = "grant_type=client_credentials" if event == "token" else "token=" + "x" * 40
    with attacker(site, auth=(site.clients["legacy"], SETUP_SECRET)) as http:
        response = http.post(
            path,
            content=body.encode(),
            headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
        )
    assert_oauth_error(response, 400, "invalid_request")
    assert site.issued() == issued
    records = site.audited(mark, event)
    assert records and all(reason == "bad_encoding" for _, _, reason in records), records
    assert "server_error" not in {error for _, error, _ in records}


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
def test_a_failed_basic_authentication_is_challenged_as_basic(site, path, realm, form):
    issued = site.issued()
    with attacker(site, auth=(site.agent("agent2")["client_id"], "wrong-secret")) as http:
        response = http.post(path, data=form)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == f'Basic realm="{realm}"'
    assert site.issued() == issued
