"""A hung Redis (SIGSTOP: connections accepted, nothing answered) costs each process one
bounded wait, then nothing until it answers again: throttling, the revocation set and
the health endpoint, against a private redis-server that the test stops and resumes."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from delegation_idp import breaker
from tests.cluster.private_redis import private_redis  # noqa: F401 - the fixture
from tests.helpers import decode

pytestmark = pytest.mark.integration

SOCKET_TIMEOUT = 1.0  # the example site's cache socket timeout
RESET = 3  # BREAKER_RESET_SECONDS in these tests


@pytest.fixture
def on_private_redis(private_redis, caplog):  # noqa: F811 - the imported fixture
    """The cache, the revocation set and the broker on the private Redis, throttling on."""
    url = private_redis.url(0)
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": SOCKET_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT},
        }
    }
    idp = {
        **settings.DELEGATION_IDP,
        "REVOCATION_REDIS_URL": url,
        "THROTTLE_RATES": {"client": "600/min", "address": "1200/min"},
        "BREAKER_RESET_SECONDS": RESET,
        "HEALTH_CHECK_TIMEOUT": 2,
    }
    caplog.set_level(logging.INFO)
    with override_settings(CACHES=caches, DELEGATION_IDP=idp):
        from django.core.cache import caches as live

        live["default"].close()
        yield private_redis
        live["default"].close()


def timed(call: Any) -> tuple[Any, float]:
    """``(result, seconds)``, called in this thread (the test's database connection)."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def timed_apart(call: Any, limit: float = 30.0) -> tuple[Any, float]:
    """``(result, seconds)`` from another thread; fails (instead of hanging the suite)
    past ``limit``. Only for calls that touch no table (the in-memory test database)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # reported below
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"no answer within {limit}s"
    if "error" in box:
        raise box["error"]
    return box.get("result"), elapsed


def test_throttling_waits_once_then_fails_open_at_once(cast, user_token, exchange, on_private_redis, caplog):
    on_private_redis.stop()
    durations = []
    for _ in range(6):
        response, elapsed = timed(lambda: exchange("agent1", user_token, cast["agent2"].uri))
        assert response.status_code == 200, response.content
        durations.append(elapsed)
    # One socket timeout in all (the first cache call opens the breaker), not three per request.
    assert durations[0] < 2 * SOCKET_TIMEOUT + 1, durations
    assert all(d < SOCKET_TIMEOUT / 2 for d in durations[1:]), durations
    assert sum(durations) < 3 * SOCKET_TIMEOUT, durations
    assert caplog.text.count("throttle cache unreachable") == 1, "one warning per opening"
    assert user_token not in caplog.text


def test_throttling_counts_again_once_redis_answers(cast, user_token, exchange, on_private_redis, settings):
    on_private_redis.stop()
    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200
    assert breaker.get(breaker.CACHE).state == breaker.OPEN
    on_private_redis.cont()
    time.sleep(RESET + 0.2)
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "THROTTLE_RATES": {"client": "2/min"}}
    statuses = [exchange("agent1", user_token, cast["agent2"].uri).status_code for _ in range(3)]
    assert statuses == [200, 200, 429], "the probe closed the breaker and the counts are kept again"
    assert breaker.get(breaker.CACHE).state == breaker.CLOSED


def test_revocation_publishes_once_redis_answers_and_waits_once_while_hung(
    cast, issue_user_token, client, on_private_redis, caplog, django_capture_on_commit_callbacks
):
    import redis

    tokens = [issue_user_token() for _ in range(4)]
    on_private_redis.stop()

    def revoke(token: str) -> Any:
        # The publication runs once the revocation commits, still inside the request.
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/o/revoke_token/",
                {"token": token, "token_type_hint": "access_token"},
                HTTP_AUTHORIZATION=cast["agent1"].basic,
            )

    durations = []
    for token in tokens[:3]:
        response, elapsed = timed(lambda token=token: revoke(token))
        assert response.status_code == 200
        durations.append(elapsed)
    # The first revocation waits out the throttle cache and the revocation set once each.
    assert durations[0] < 4 * SOCKET_TIMEOUT + 1, durations
    assert all(d < SOCKET_TIMEOUT / 2 for d in durations[1:]), durations

    on_private_redis.cont()
    time.sleep(RESET + 0.2)
    response, elapsed = timed(lambda: revoke(tokens[3]))
    assert response.status_code == 200
    store = redis.Redis.from_url(on_private_redis.url(0))
    jti = decode(tokens[3])[1]["jti"]
    assert store.exists(f"delegation_idp:revoked:{jti}"), "the revocation set is written again"
    # What was skipped while hung, the periodic task republishes.
    from delegation_idp.lineage.publication import publish_revocations

    publish_revocations()
    for token in tokens[:3]:
        assert store.exists(f"delegation_idp:revoked:{decode(token)[1]['jti']}")
    store.close()


def test_health_answers_within_its_bound_naming_cache_and_broker(client, db, on_private_redis):
    from celery import current_app

    saved = {k: current_app.conf[k] for k in ("task_always_eager", "broker_url")}
    current_app.conf.update(task_always_eager=False, broker_url=on_private_redis.url(1))
    try:
        response, _ = timed_apart(lambda: client.get("/health/"))
        assert response.json()["checks"]["broker"]["ok"] is True
        on_private_redis.stop()
        bound = 2 + 0.5  # HEALTH_CHECK_TIMEOUT plus thread start-up and JSON
        for _ in range(3):
            response, elapsed = timed_apart(lambda: client.get("/health/"))
            assert elapsed < bound, elapsed
            assert response.status_code == 200  # cache and broker are optional by default
            body = response.json()
            assert body["status"] == "degraded"
            assert body["checks"]["database"]["ok"] is True
            assert body["checks"]["cache"]["ok"] is False
            assert body["checks"]["broker"]["ok"] is False
    finally:
        on_private_redis.cont()
        current_app.conf.update(saved)
