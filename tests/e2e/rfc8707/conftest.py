"""Fixtures for RFC 8707 at the authorization endpoint: a user authorizing an agent for a
``resource`` through the consent page, and redeeming the code."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest


def query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


@dataclass
class Authorization:
    """One trip through ``/o/authorize/``: the response, and the PKCE verifier to redeem it."""

    response: Any
    verifier: str
    params: dict[str, Any]

    @property
    def location(self) -> dict[str, list[str]]:
        return query(self.response["Location"])

    @property
    def code(self) -> str:
        return self.location["code"][0]


@pytest.fixture
def authorize(client: Any, cast: Any):
    """The cast's user at ``/o/authorize/`` for ``agent``, asking for ``resource`` (one value or
    several). ``method`` is GET (the consent page, or an error redirect before it) or POST (the
    user consents). ``form`` overrides what the consent form posts (a hidden field edited)."""

    def run(
        agent: Any,
        resource: str | list[str] | None = None,
        *,
        method: str = "POST",
        scope: str | None = None,
        form: dict[str, Any] | None = None,
    ) -> Authorization:
        client.force_login(cast.user)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        params: dict[str, Any] = {
            "response_type": "code",
            "client_id": agent.client_id,
            "redirect_uri": agent.redirect_uri,
            "scope": scope or cast.scope,
            "state": "st4te",
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        url = f"/o/authorize/?{urlencode(params, doseq=True)}"
        if method == "GET":
            response = client.get(url)
        else:
            posted = {**params, "allow": "Authorize"}
            if isinstance(resource, list):
                posted["resource"] = " ".join(resource)  # the consent form's one hidden field
            posted.update(form or {})
            response = client.post(url, {k: v for k, v in posted.items() if v is not None})
        client.logout()
        return Authorization(response, verifier, params)

    return run


@pytest.fixture
def redeem(token_endpoint: Any):
    """Redeem an :class:`Authorization`'s code at the token endpoint as ``agent``."""

    def run(agent: Any, authorization: Authorization, **extra: Any) -> Any:
        form = {
            "grant_type": "authorization_code",
            "code": authorization.code,
            "redirect_uri": agent.redirect_uri,
            "code_verifier": authorization.verifier,
            **extra,
        }
        return token_endpoint(form, agent)

    return run
