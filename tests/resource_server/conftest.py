"""Fixtures for the resource-server side. The provider behind an httpx transport, the
validator and the resource settings are shared with the end-to-end tests (tests/conftest.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest


@pytest.fixture
def introspection_client(cast: Any) -> tuple[str, str]:
    """The resource server's client at the introspection endpoint: its client_id is its
    identity URI, which is how the provider's introspection recognises an audience."""
    from example_project.demo_services.cast import register_introspection_client

    return register_introspection_client(cast.resource_server)


@pytest.fixture
def rs_redis_url(redis_url: str) -> str:
    """This area's own Redis database (4), flushed before use."""
    parts = urlsplit(redis_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/4", "", ""))
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def readdress(db: Any) -> Any:
    """A token the provider issued, signed again with the provider's current key after its
    ``aud`` is replaced: what the provider issues when it addresses a token to the resource
    URL a client asked for (RFC 8707) instead of the identity URI it maps that URL to."""
    from delegation_idp import jose
    from delegation_idp.provider.keys import keyset
    from tests.helpers import decode

    def sign(token: str, aud: str | list[str]) -> str:
        claims = {**decode(token)[1], "aud": aud}
        return jose.sign(claims, keyset.signing_key())

    return sign


@pytest.fixture
def bind(db: Any) -> Any:
    """A token the provider issued, bound to ``prover``'s key (``cnf.jkt``, RFC 9449 section
    6.1) and signed again with the provider's current key: what the provider issues to a
    client that sent a DPoP proof with its token request."""
    from delegation_idp import jose
    from delegation_idp.provider.keys import keyset
    from tests.helpers import decode

    def sign(token: str, prover: Any) -> str:
        claims = {**decode(token)[1], "cnf": {"jkt": prover.jkt}}
        return jose.sign(claims, keyset.signing_key())

    return sign


@pytest.fixture
def prover() -> Any:
    """A client's DPoP key."""
    from tests.support.dpop import Prover

    return Prover()
