"""Fixtures for the signing-key tests: a controllable clock and a clean key cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from delegation_idp.provider.keys import keyset

START = datetime(2030, 1, 6, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_keyset() -> Iterator[None]:
    """The key cache is per process; every test starts and ends without it."""
    keyset.invalidate()
    keyset._last_miss_reload = float("-inf")
    yield
    keyset.invalidate()


class Clock:
    """Frozen wall-clock time (``time.time``, ``timezone.now``) that tests move forward."""

    def __init__(self, traveller: Any) -> None:
        self._traveller = traveller

    def now(self) -> datetime:
        from django.utils import timezone

        return timezone.now()

    def advance(self, seconds: float) -> datetime:
        self._traveller.shift(timedelta(seconds=seconds))
        return self.now()

    def to(self, moment: datetime) -> datetime:
        self._traveller.move_to(moment)
        return self.now()


@pytest.fixture
def clock() -> Iterator[Clock]:
    with time_machine.travel(START, tick=False) as traveller:
        yield Clock(traveller)


@pytest.fixture
def idp(settings: Any):
    """Change DELEGATION_IDP options for one test (the key cache is dropped on change)."""

    def set_options(**options: Any) -> None:
        settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, **options}

    return set_options


@pytest.fixture
def introspect(client: Any, cast: Any):
    """RFC 7662 introspection of ``token`` as the named agent."""

    def run(token: str, agent_name: str = "agent1") -> dict[str, Any]:
        agent = cast[agent_name]
        response = client.post("/o/introspect/", {"token": token}, HTTP_AUTHORIZATION=agent.basic)
        assert response.status_code == 200, response.content
        return response.json()

    return run


@pytest.fixture
def jwks(client: Any):
    """The JWKS as served, and its kids."""

    def fetch() -> list[str]:
        response = client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        return [key["kid"] for key in response.json()["keys"]]

    return fetch
