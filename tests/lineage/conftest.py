"""Fixtures for the lineage tests: this area's Redis database and a fresh key set. Introspection,
RFC 7009 revocation and the tokens' clients are shared with the end-to-end tests (tests/conftest.py)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

LINEAGE_REDIS_DB = 3


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
