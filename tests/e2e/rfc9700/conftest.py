"""Fixtures for the RFC 9700 / RFC 9207 tests: the authorization endpoint, clients per grant."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings

# The example site's RFC 9700 gates, all off: a site installed before they existed.
GATES_OFF = {
    name: False
    for name in (
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT",
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT",
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD",
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT",
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS",
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE",
    )
}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def query(location: str) -> dict[str, list[str]]:
    parts = urlsplit(location)
    return parse_qs(parts.query or parts.fragment)


@pytest.fixture
def authorize(client: Any, cast: Any):
    """Ask ``/o/authorize/`` as the cast's user for ``agent``; ``method`` GET or POST (consent)."""

    def run(agent: Any, *, method: str = "POST", allow: bool = True, **overrides: Any) -> Any:
        client.force_login(cast.user)
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": agent.client_id,
            "redirect_uri": agent.redirect_uri,
            "scope": cast.scope,
            "state": "xyz",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            **overrides,
        }
        params = {k: v for k, v in params.items() if v is not None}
        url = f"/o/authorize/?{urlencode(params)}"
        if method == "GET":
            response = client.get(url)
        else:
            form = {**params, **({"allow": "Authorize"} if allow else {})}
            response = client.post(url, form)
        client.logout()
        return response

    return run


@pytest.fixture
def gates_off(settings: Any) -> None:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **GATES_OFF}


def example_oauth2_provider() -> dict[str, Any]:
    return dict(settings.OAUTH2_PROVIDER)
