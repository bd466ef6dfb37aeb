"""Fixtures for clients that register themselves: a client ID metadata document served by a
stand-in fetcher (the real fetcher against a local https server is in test_cimd_live.py),
registration rules, and a stock public client's authorization-code flow."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from delegation_idp.models import Party, RegistrationRule
from tests.support.tls import https_documents, tls_authority  # noqa: F401 - fixtures

CLIENT_URL = "https://mcp-client.example.com/oauth/client.json"
REDIRECT = "http://127.0.0.1:33418/callback"


class DocumentFetcher:
    """A ``CIMD_METADATA_FETCHER`` that serves documents from memory and counts its fetches.
    django-oauth-toolkit validates what it returns exactly as it validates a fetched one."""

    documents: ClassVar[dict[str, dict[str, Any]]] = {}
    fetched: ClassVar[list[str]] = []

    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        from oauth2_provider.cimd import CIMDError

        self.fetched.append(client_id)
        if client_id not in self.documents:
            raise CIMDError("no such document")
        return dict(self.documents[client_id]), 300


def document(client_id: str = CLIENT_URL, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_name": "Stock MCP client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **extra,
    }


@pytest.fixture
def fetcher(settings: Any) -> type[DocumentFetcher]:
    from django.core.cache import cache

    cache.clear()  # django-oauth-toolkit's failure back-off lives there
    DocumentFetcher.documents = {CLIENT_URL: document()}
    DocumentFetcher.fetched = []
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "CIMD_METADATA_FETCHER": "tests.registration.conftest.DocumentFetcher",
    }
    return DocumentFetcher


@pytest.fixture
def registration_rule(cast: Any) -> RegistrationRule:
    """Clients whose metadata document is on mcp-client.example.com may reach mcp-server1
    with at most tasks.read."""
    rule = RegistrationRule.objects.create(
        via=Party.BY_CIMD, hosts="mcp-client.example.com", max_scope="tasks.read", description="MCP clients"
    )
    rule.audiences.set([Party.objects.get(uri=cast["mcp-server1"].uri)])
    return rule


@dataclass
class Login:
    response: Any
    verifier: str

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.response["Location"]).query)


@pytest.fixture
def login(client: Any, cast: Any):
    """The cast's user signs a public client in at ``/o/authorize/`` (PKCE), consenting
    (POST) or only looking at the consent page (GET)."""

    def run(
        client_id: str = CLIENT_URL,
        *,
        resource: str | None = None,
        scope: str = "tasks.read",
        method: str = "POST",
        redirect_uri: str = REDIRECT,
    ) -> Login:
        client.force_login(cast.user)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": "s1",
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
        if resource:
            params["resource"] = resource
        url = f"/o/authorize/?{urlencode(params)}"
        response = client.get(url)  # the consent page (or an error), as a browser sees it first
        if method == "POST" and response.status_code == 200:
            response = client.post(url, {**params, "allow": "Authorize"})
        client.logout()
        return Login(response, verifier)

    return run


@pytest.fixture
def redeem_public(client: Any):
    """Redeem a public client's code (no client authentication: RFC 6749 section 4.1.3)."""

    def run(login: Login, client_id: str = CLIENT_URL, **extra: Any) -> Any:
        form = {
            "grant_type": "authorization_code",
            "code": login.params["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": login.verifier,
            **extra,
        }
        return client.post("/o/token/", urlencode(form), content_type="application/x-www-form-urlencoded")

    return run
