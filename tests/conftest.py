"""Shared fixtures: the seed's cast, the token endpoint, real services."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT, jose

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# -- real services -------------------------------------------------------------


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a clear message on a laptop; fail in CI, where the service must be up."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(f"{message}; this test runs in CI (CI=true), where it is required")


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    parts = urlsplit(url)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    parts = urlsplit(url)
    require_service("PostgreSQL", parts.hostname or "127.0.0.1", parts.port or 5432)
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the cast --------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    name: str
    client_id: str
    client_secret: str
    uri: str
    redirect_uri: str

    @property
    def basic(self) -> str:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Cast:
    data: dict[str, Any]
    agents: dict[str, Agent]
    user: Any
    resource_server: str
    scope: str

    def __getitem__(self, name: str) -> Agent:
        return self.agents[name]


@pytest.fixture
def cast(db: Any) -> Cast:
    """The seed's cast: user -> agent1 -> agent2 -> mcp-server1 -> resource server."""
    from django.contrib.auth import get_user_model

    from example_project.demo_services.seed import seed

    data = seed()
    agents = {name: Agent(name=name, **values) for name, values in data["agents"].items()}
    User = get_user_model()
    user = User.objects.get(**{User.USERNAME_FIELD: data["user"]["username"]})
    return Cast(data, agents, user, data["resource_server"]["uri"], data["scope"])


# -- the token endpoint ------------------------------------------------------------


@pytest.fixture
def token_endpoint(client: Any):
    """POST form data to the token endpoint as the named agent (or unauthenticated)."""

    def post(data: Any, agent: Agent | None = None, **extra: Any) -> Any:
        body = urlencode(data, doseq=True) if not isinstance(data, (str, bytes)) else data
        headers = {}
        if agent is not None:
            headers["HTTP_AUTHORIZATION"] = agent.basic
        headers.update(extra)
        content_type = headers.pop("content_type", "application/x-www-form-urlencoded")
        return client.post("/o/token/", body, content_type=content_type, **headers)

    return post


def authorize_code(client: Any, agent: Agent, user: Any, scope: str) -> tuple[str, str]:
    """The user authorizes ``agent`` at the site (PKCE); returns (code, verifier)."""
    client.force_login(user)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": agent.client_id,
        "redirect_uri": agent.redirect_uri,
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


def code_form(agent: Agent, code: str, verifier: str, **extra: str) -> dict[str, str]:
    """The token request that redeems an authorization code (RFC 6749 section 4.1.3, with PKCE)."""
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": agent.redirect_uri,
        "code_verifier": verifier,
        **extra,
    }


@pytest.fixture
def issue_user_token(cast: Cast, client: Any, token_endpoint: Any):
    """A user token for an agent, obtained through the authorization-code flow."""

    def issue(agent_name: str = "agent1", scope: str | None = None, user: Any = None) -> str:
        agent = cast[agent_name]
        code, verifier = authorize_code(client, agent, user or cast.user, scope or cast.scope)
        response = token_endpoint(
            code_form(agent, code, verifier),
            agent,
        )
        assert response.status_code == 200, response.content
        return response.json()["access_token"]

    return issue


@pytest.fixture
def user_token(issue_user_token: Any) -> str:
    return issue_user_token()


@pytest.fixture
def exchange(cast: Cast, token_endpoint: Any):
    """Exchange ``subject_token`` as the named agent; extra form parameters pass through."""

    def run(agent_name: str, subject_token: str, audience: str | None = None, **params: Any) -> Any:
        data: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
        }
        if audience is not None:
            data["audience"] = audience
        data.update(params)
        return token_endpoint(data, cast[agent_name])

    return run


@pytest.fixture
def clients(cast: Any) -> dict[str, Agent]:
    """The cast's agents plus a confidential non-agent, a public client and a wrong secret."""
    from oauth2_provider.models import get_application_model

    Application = get_application_model()
    plain = Application.objects.create(
        name="plain",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret="plain-secret",
        hash_client_secret=True,
    )
    public = Application.objects.create(
        name="public",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://public.example.com/cb",
        client_secret="",
        hash_client_secret=False,
    )
    agents = dict(cast.agents)
    agents["plain-client"] = Agent("plain", plain.client_id, "plain-secret", "", "")
    agents["public-client"] = Agent("public", public.client_id, "", "", "")
    agents["wrong-secret"] = Agent("agent1", cast["agent1"].client_id, "wrong", "", "")
    return agents


@pytest.fixture
def chain(cast: Cast, user_token: str, exchange: Any) -> list[str]:
    """The seed's four tokens: user -> agent1, agent1 -> agent2, agent2 -> mcp, mcp -> resource."""
    tokens = [user_token]
    for name, target in (
        ("agent1", cast["agent2"].uri),
        ("agent2", cast["mcp-server1"].uri),
        ("mcp-server1", cast.resource_server),
    ):
        response = exchange(name, tokens[-1], target)
        assert response.status_code == 200, response.content
        tokens.append(response.json()["access_token"])
    return tokens


# -- introspection (RFC 7662) and revocation (RFC 7009) ------------------------------------------


@pytest.fixture
def agent_for(cast: Cast):
    """The cast member that is the client of a token (who may introspect and revoke it)."""
    from tests.helpers import decode

    def find(token: str) -> Agent:
        client_id = decode(token)[1]["client_id"]
        return next(a for a in cast.agents.values() if a.client_id == client_id)

    return find


@pytest.fixture
def introspect(client: Any):
    """POST to the introspection endpoint as ``agent`` (None: unauthenticated)."""

    def post(token: str, agent: Agent | None = None, **extra: Any) -> Any:
        headers = {"HTTP_AUTHORIZATION": agent.basic} if agent is not None else {}
        headers.update(extra)
        return client.post("/o/introspect/", {"token": token}, **headers)

    return post


@pytest.fixture
def revoke_endpoint(client: Any):
    """RFC 7009: POST the token to the revocation endpoint as ``agent``, with ``hint`` as its
    ``token_type_hint`` (None: no hint)."""

    def post(token: str, agent: Agent, hint: str | None = "access_token") -> Any:
        form = {"token": token} if hint is None else {"token": token, "token_type_hint": hint}
        return client.post("/o/revoke_token/", form, HTTP_AUTHORIZATION=agent.basic)

    return post


@pytest.fixture
def is_active(introspect: Any, agent_for: Any):
    """Whether the provider still considers ``token`` active, asked by its own client."""

    def check(token: str) -> bool:
        response = introspect(token, agent_for(token))
        assert response.status_code == 200, response.content
        return bool(response.json()["active"])

    return check


# -- private_key_jwt client authentication (RFC 7523) -----------------------------------------


@pytest.fixture
def agent_key(cast: Cast) -> jose.SigningKey:
    """agent1's private_key_jwt key; its public half is registered in the party's ``jwks``."""
    from delegation_idp.models import Party

    key = jose.generate_key("ES256")
    party = Party.objects.get(uri=cast["agent1"].uri)
    party.jwks = {"keys": [key.public_jwk()]}
    party.save()
    return key


@pytest.fixture
def assertion(cast: Cast, agent_key: jose.SigningKey):
    """A signed client assertion for agent1; keyword arguments override claims (None drops one)."""

    def make(key: jose.SigningKey | None = None, typ: str = "JWT", **overrides: Any) -> str:
        now = int(time.time())
        client_id = cast["agent1"].client_id
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": "http://testserver",
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jose.sign(claims, key or agent_key, typ=typ)

    return make


@pytest.fixture
def assertion_params():
    """The token-request parameters that carry a client assertion (RFC 7521 section 4.2)."""
    from delegation_idp.provider.client_auth import ASSERTION_TYPE

    def params(token: str, **extra: Any) -> dict[str, Any]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token, **extra}

    return params


# -- the resource side: the real provider behind httpx ----------------------------------------

PROVIDER_ISSUER = "http://testserver"


class DjangoTransport(httpx.BaseTransport):
    """httpx over Django's test client: the real provider's views, in this test's transaction."""

    def __init__(self) -> None:
        from django.test import Client

        self.client = Client()
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "content-type", "accept-encoding", "connection")
        }
        path = request.url.raw_path.decode("ascii")
        self.calls.append((request.method, request.url.path))
        response = self.client.generic(
            request.method,
            path,
            data=body,
            content_type=request.headers.get("content-type", ""),
            headers=headers,
        )
        return httpx.Response(response.status_code, headers=list(response.items()), content=response.content)

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.calls if p == path)


@pytest.fixture
def provider(db: Any) -> DjangoTransport:
    return DjangoTransport()


@pytest.fixture
def provider_http(provider: DjangoTransport):
    with httpx.Client(transport=provider) as http:
        yield http


class Clock:
    """An injectable clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def at(self, moment: float) -> None:
        """From now on, read ``moment`` (and move on from there)."""
        self.offset = moment - time.time()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_validator(cast: Any, provider_http: httpx.Client, clock: Clock):
    """A validator for ``resource`` (default: the seed's resource server) talking to the provider."""
    from delegation_idp.resource_server.validation import ResourceServerConfig, TokenValidator

    def make(resource: str | None = None, **options: Any) -> TokenValidator:
        monotonic = options.pop("monotonic", clock)
        replay_store = options.pop("replay_store", None)
        config = ResourceServerConfig(
            issuer=PROVIDER_ISSUER, resource=resource or cast.resource_server, **options
        )
        return TokenValidator(
            config, http=provider_http, clock=clock, monotonic=monotonic, replay_store=replay_store
        )

    return make


@pytest.fixture
def use_validator(make_validator: Any):
    """Install a validator for the DRF authentication class for this test."""
    from delegation_idp.resource_server import drf

    installed: list[Any] = []

    def install(resource: str | None = None, **options: Any) -> Any:
        validator = make_validator(resource, **options)
        drf.set_validator(validator)
        installed.append(validator)
        return validator

    yield install
    drf.set_validator(None)


@pytest.fixture
def resource_settings(settings: Any, cast: Any) -> Any:
    """The resource server's own options, as a Django site would set them."""
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "RESOURCE_SERVER_URI": cast.resource_server,
        "RESOURCE_SCOPES_SUPPORTED": ["tasks.read", "tasks.write"],
    }
    return settings


@pytest.fixture(autouse=True)
def fresh_key_cache() -> Any:
    """The key cache is per process, and each test's database is rolled back: a key
    cached by an earlier test must not sign (the JWKS reads the database)."""
    from delegation_idp.provider.keys import keyset

    keyset.invalidate()
    yield


@pytest.fixture(autouse=True)
def fresh_status_lists() -> Any:
    """Reserved status-list positions are per process, and each test's database is rolled
    back: a block reserved in an earlier test must not hand out entries of a list that is gone."""
    from delegation_idp.provider import status_lists

    status_lists.reset()
    yield


@pytest.fixture(autouse=True)
def closed_breakers() -> Any:
    """Circuit breakers are per process: one opened by an earlier test's unreachable
    Redis must not make a later test skip its cache calls."""
    from delegation_idp import breaker

    breaker.reset_all()
    yield
    breaker.reset_all()


@pytest.fixture(autouse=True)
def fresh_throttle_counts() -> Any:
    """Throttle and lockout counts live in the process-local cache: one test's wrong
    passwords or failed client authentications must not lock out the next test."""
    from django.core.cache import cache

    cache.clear()
    yield


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "rfc(section): RFC section covered")


# -- the compatibility matrix's second database ------------------------------------------

# The fixtures through which a test reaches the Django test database (DATABASE_URL's). Every
# other test either touches no database or makes its own (the process tests: a scratch
# PostgreSQL database or an SQLite file, whatever DATABASE_URL says; tests.procs drops it).
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)


def uses_the_test_database(item: Any) -> bool:
    return item.get_closest_marker("django_db") is not None or not DATABASE_FIXTURES.isdisjoint(
        getattr(item, "fixturenames", ())
    )


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help=(
            "deselect every test that does not use the Django test database: for a second run of "
            "the suite, with the same Python and Django, on another DATABASE_URL (.ci/run)"
        ),
    )


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if not config.getoption("--database-tests-only"):
        return
    kept = [item for item in items if uses_the_test_database(item)]
    dropped = [item for item in items if not uses_the_test_database(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
