"""Fixtures for the lineage tests: introspection, RFC 7009 revocation, the tokens' clients."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.helpers import decode

LINEAGE_REDIS_DB = 3


@pytest.fixture
def agent_for(cast: Any):
    """The cast member that is the client of a token (who may introspect and revoke it)."""

    def find(token: str) -> Any:
        client_id = decode(token)[1]["client_id"]
        return next(a for a in cast.agents.values() if a.client_id == client_id)

    return find


@pytest.fixture
def introspect(client: Any):
    """POST to the introspection endpoint as ``agent`` (None: unauthenticated)."""

    def post(token: str, agent: Any = None, **extra: Any) -> Any:
        headers = {"HTTP_AUTHORIZATION": agent.basic} if agent is not None else {}
        headers.update(extra)
        return client.post("/o/introspect/", {"token": token}, **headers)

    return post


@pytest.fixture
def revoke_endpoint(client: Any):
    """RFC 7009: POST the token to the revocation endpoint as ``agent``."""

    def post(token: str, agent: Any) -> Any:
        return client.post(
            "/o/revoke_token/",
            {"token": token, "token_type_hint": "access_token"},
            HTTP_AUTHORIZATION=agent.basic,
        )

    return post


@pytest.fixture
def is_active(introspect: Any, agent_for: Any):
    """Whether the provider still considers ``token`` active, asked by its own client."""

    def check(token: str) -> bool:
        response = introspect(token, agent_for(token))
        assert response.status_code == 200, response.content
        return bool(response.json()["active"])

    return check


@pytest.fixture
def lineage_redis_url(redis_url: str) -> str:
    """This area's own Redis database (3), emptied before and after each test."""
    import redis

    parts = urlsplit(redis_url)
    url = urlunsplit(parts._replace(path=f"/{LINEAGE_REDIS_DB}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def fresh_keyset() -> None:
    """Each test's database is rolled back, so a key cached by an earlier test may not
    exist in this one: start every test from the database's key set."""
    from delegation_idp.provider.keys import keyset

    keyset.invalidate()
