"""DPoP (RFC 9449) at the provider: a key per hop, and proofs made with it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from delegation_idp import jose

TOKEN_URL = "http://testserver/o/token/"


class Prover:
    """One hop's DPoP key, and the proofs it signs (RFC 9449 section 4.2)."""

    def __init__(self, alg: str = "ES256") -> None:
        self.key = jose.generate_key(alg)

    @property
    def jkt(self) -> str:
        return self.key.kid  # generate_key names a key by its RFC 7638 thumbprint

    def proof(
        self,
        url: str = TOKEN_URL,
        method: str = "POST",
        *,
        token: str | None = None,
        nonce: str | None = None,
        **overrides: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if token is not None:
            claims["ath"] = jose.token_hash(token)
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(overrides)
        return jose.sign_proof({k: v for k, v in claims.items() if v is not None}, self.key)

    def header(self, **kwargs: Any) -> dict[str, str]:
        """The test client's keyword for the ``DPoP`` header."""
        return {"HTTP_DPOP": self.proof(**kwargs)}


@pytest.fixture
def prover() -> Callable[..., Prover]:
    """A new hop key: ``prover()`` or ``prover("EdDSA")``."""
    return Prover


@pytest.fixture
def keys_of(cast: Any) -> dict[str, Prover]:
    """One key per hop of the seed's chain."""
    return {name: Prover() for name in cast.agents}


@pytest.fixture
def bound_user_token(cast: Any, client: Any, token_endpoint: Any, keys_of: dict[str, Prover]):
    """agent1's user token (authorization code with PKCE) bound to agent1's key."""
    from tests.conftest import authorize_code, code_form

    def issue(agent_name: str = "agent1", key: Prover | None = None) -> dict[str, Any]:
        agent = cast[agent_name]
        code, verifier = authorize_code(client, agent, cast.user, cast.scope)
        key = key or keys_of[agent_name]
        response = token_endpoint(code_form(agent, code, verifier), agent, **key.header())
        assert response.status_code == 200, response.content
        return response.json()

    return issue


@pytest.fixture
def worker(cast: Any) -> Any:
    """A registered agent that obtains tokens for itself (client credentials)."""
    from oauth2_provider.models import get_application_model

    from delegation_idp.models import Party
    from tests.conftest import Agent

    app = get_application_model().objects.create(
        name="worker",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret="worker-secret",
        hash_client_secret=True,
    )
    Party.objects.create(uri="https://worker.example.com", name="Worker", kind=Party.AGENT, application=app)
    return Agent("worker", app.client_id, "worker-secret", "https://worker.example.com", "")
