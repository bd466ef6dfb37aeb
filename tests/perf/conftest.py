"""Fixtures for client authentication and query-count tests."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from delegation_idp import jose
from delegation_idp.provider.client_auth import ASSERTION_TYPE


@pytest.fixture
def agent_key(cast: Any) -> jose.SigningKey:
    """agent1's private_key_jwt key; its public half is registered in the party's ``jwks``."""
    from delegation_idp.models import Party

    key = jose.generate_key("ES256")
    party = Party.objects.get(uri=cast["agent1"].uri)
    party.jwks = {"keys": [key.public_jwk()]}
    party.save()
    return key


@pytest.fixture
def assertion(cast: Any, agent_key: jose.SigningKey):
    """A signed client assertion for agent1; keyword arguments override claims."""

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
    def params(token: str, **extra: Any) -> dict[str, Any]:
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token, **extra}

    return params
