"""Fixtures for the resource-server side: the real provider behind an httpx transport."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from delegation_idp.resource_server import drf
from delegation_idp.resource_server.validation import ResourceServerConfig, TokenValidator

ISSUER = "http://testserver"


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

    def make(resource: str | None = None, **options: Any) -> TokenValidator:
        monotonic = options.pop("monotonic", clock)
        config = ResourceServerConfig(issuer=ISSUER, resource=resource or cast.resource_server, **options)
        return TokenValidator(config, http=provider_http, clock=clock, monotonic=monotonic)

    return make


@pytest.fixture
def use_validator(make_validator: Any):
    """Install a validator for the DRF authentication class for this test."""
    installed: list[TokenValidator] = []

    def install(resource: str | None = None, **options: Any) -> TokenValidator:
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
