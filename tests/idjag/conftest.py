"""Fixtures for ID-JAGs: an external authorization server registered as a party, with a
delegation rule that lets agent1 obtain ID-JAGs for it, and the leg-1 request."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.idjag import TOKEN_TYPE
from delegation_idp.models import DelegationRule, Party
from tests.conftest import ACCESS_TOKEN_TYPE
from tests.support.tls import https_documents, tls_authority  # noqa: F401 - fixtures

AS_ISSUER = "https://as.tools.example.net"
MCP_RESOURCE = "https://mcp.tools.example.net/mcp"


@pytest.fixture
def external_as(cast: Any) -> Party:
    """The MCP server's authorization server in another trust domain; its resources are under
    ``https://mcp.tools.example.net``."""
    return Party.objects.create(
        uri=AS_ISSUER,
        name="Tools authorization server",
        kind=Party.AUTHORIZATION_SERVER,
        metadata_url=f"{AS_ISSUER}/.well-known/oauth-authorization-server",
        resource_prefixes="https://mcp.tools.example.net",
    )


@pytest.fixture
def id_jag_rule(cast: Any, external_as: Party) -> DelegationRule:
    """agent1 may obtain ID-JAGs for the external server, directly from a user token, with
    at most ``tasks.read``."""
    rule = DelegationRule.objects.create(
        actor=Party.objects.get(uri=cast["agent1"].uri),
        max_scope="tasks.read",
        allow_direct_from_user=True,
        description="agent1 reaches the tools domain",
    )
    rule.audiences.set([external_as])
    return rule


@pytest.fixture
def request_id_jag(token_endpoint: Any, cast: Any):
    """Leg 1: the token exchange for an ID-JAG, as the named agent (``HTTP_*`` keywords are
    request headers, e.g. ``HTTP_DPOP``; the others form parameters, None dropping one)."""

    def post(agent: str, subject_token: str, **params: Any) -> Any:
        headers = {k: params.pop(k) for k in [k for k in params if k.startswith("HTTP_")]}
        form: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "requested_token_type": TOKEN_TYPE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": AS_ISSUER,
            "resource": MCP_RESOURCE,
        }
        form.update({k: v for k, v in params.items() if v is not None})
        for name in [k for k, v in params.items() if v is None]:
            form.pop(name, None)
        return token_endpoint(form, cast[agent], **headers)

    return post


@pytest.fixture
def sign_in(cast: Any, client: Any, token_endpoint: Any):
    """A user signs in to the named agent with OpenID Connect (``openid`` in the scope): the
    token response, with ``access_token``, ``id_token`` and ``refresh_token``."""
    from tests.conftest import authorize_code, code_form

    def run(agent: str = "agent1", scope: str | None = None, user: Any = None) -> dict[str, Any]:
        who = cast[agent]
        code, verifier = authorize_code(client, who, user or cast.user, scope or f"openid {cast.scope}")
        response = token_endpoint(code_form(who, code, verifier), who)
        assert response.status_code == 200, response.content
        return dict(response.json())

    return run


# -- leg 2: an enterprise identity provider elsewhere, trusted here ------------------------------

ENTERPRISE = "https://idp.enterprise.example.com"
ENTERPRISE_JWKS = f"{ENTERPRISE}/oauth2/jwks"


class StaticFetcher:
    """An ``ID_JAG_JWKS_FETCHER`` for tests that serves the documents in :attr:`documents`
    (by URL) and counts its fetches; a URL it lacks fails as an unreachable one does."""

    documents: dict[str, Any] = {}
    fetched: list[str] = []

    def fetch(self, url: str) -> tuple[Any, int]:
        type(self).fetched.append(url)
        if url not in self.documents:
            raise OSError("unreachable")
        return self.documents[url], 600


@pytest.fixture(autouse=True)
def fresh_cache() -> Any:
    """The JWKS cache and the replay store live in Django's cache, per process in tests."""
    from django.core.cache import cache

    cache.clear()
    StaticFetcher.documents = {}
    StaticFetcher.fetched = []
    yield
    cache.clear()


@pytest.fixture
def enterprise_key() -> Any:
    from delegation_idp import jose

    key = jose.generate_key("ES256")
    StaticFetcher.documents[ENTERPRISE_JWKS] = {"keys": [key.public_jwk()]}
    return key


@pytest.fixture
def trusted(cast: Any, enterprise_key: Any, settings: Any) -> Any:
    """The enterprise IdP, trusted for ID-JAGs that agent2 redeems; its ``sub`` is a username."""
    from oauth2_provider.models import get_application_model

    from delegation_idp.models import Party, TrustedIssuer

    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "ID_JAG_JWKS_FETCHER": "tests.idjag.conftest.StaticFetcher",
    }
    issuer = TrustedIssuer.objects.create(
        issuer=ENTERPRISE,
        name="Enterprise IdP",
        jwks_uri=ENTERPRISE_JWKS,
        algorithms="ES256 RS256",
        user_mapping=TrustedIssuer.BY_CLAIM,  # an existing user by username (not the default)
    )
    issuer.clients.set([get_application_model().objects.get(client_id=cast["agent2"].client_id)])
    issuer.services.set([Party.objects.get(uri=cast.resource_server)])
    return issuer


@pytest.fixture
def make_id_jag(cast: Any, enterprise_key: Any):
    """An ID-JAG of the enterprise IdP for the cast's user, to be redeemed here by agent2."""
    import secrets
    import time

    from delegation_idp import jose
    from delegation_idp.idjag import TYP

    def make(*, key: Any = None, typ: str = TYP, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ENTERPRISE,
            "sub": cast.user.get_username(),
            "aud": "http://testserver",
            "client_id": cast["agent2"].client_id,
            "jti": secrets.token_urlsafe(12),
            "iat": now,
            "exp": now + 300,
            "resource": cast.resource_server,
            "scope": "tasks.read tasks.write",
            "act": {"sub": "https://agent.enterprise.example.com"},
        }
        claims.update(overrides)
        for name in [k for k, v in overrides.items() if v is None]:
            claims.pop(name)
        return jose.sign(claims, key or enterprise_key, typ=typ)

    return make


@pytest.fixture
def redeem(token_endpoint: Any, cast: Any):
    """Leg 2: the jwt-bearer grant, as the named client (agent2 by default)."""
    from delegation_idp.rfc7523 import GRANT_TYPE

    def post(assertion: str, agent: str = "agent2", **params: Any) -> Any:
        form: dict[str, Any] = {"grant_type": GRANT_TYPE, "assertion": assertion, **params}
        return token_endpoint(form, cast[agent])

    return post
