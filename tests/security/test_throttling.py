"""Token-endpoint throttling: per client and per source address,
429 with ``Retry-After``, a lockout after repeated authentication failures, shared
across processes through the cache, and open (with a warning) when the cache is down."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from django.core.cache import cache
from django.test import override_settings

from delegation_idp.conf import idp_settings
from delegation_idp.models import AuditEvent
from delegation_idp.provider import throttling
from tests.conftest import ACCESS_TOKEN_TYPE, free_port
from tests.helpers import assert_oauth_error, snapshot, with_idp

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


def exchange_form(token: str = "not-a-token") -> dict[str, str]:
    return {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": "https://agent2.example.com",
    }


def assert_throttled(response: Any) -> int:
    assert_oauth_error(response, 429, "slow_down")
    wait = int(response["Retry-After"])
    assert wait >= 1
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None and event.decision == "denied" and event.reason == "throttled"
    return wait


def test_per_client_limit(cast, token_endpoint, user_token):
    with with_idp(THROTTLE_RATES={"client": "3/min"}):
        for _ in range(3):
            assert token_endpoint(exchange_form(), cast["agent1"]).status_code == 400
        before = snapshot()
        # Even a request that would succeed is refused once the client is over its limit.
        wait = assert_throttled(token_endpoint(exchange_form(user_token), cast["agent1"]))
        assert wait <= 60
        assert snapshot() == before
        # Another client is not affected.
        assert token_endpoint(exchange_form(), cast["agent2"]).status_code == 400


def test_per_address_limit_applies_before_parsing(cast, client):
    with with_idp(THROTTLE_RATES={"address": "2/min"}):
        for _ in range(2):
            # Malformed requests count too: the address limit runs before the body is read.
            response = client.generic("POST", "/o/token/", "%zz", REMOTE_ADDR="198.51.100.7")
            assert response.status_code == 400
        assert_throttled(client.get("/o/token/", REMOTE_ADDR="198.51.100.7"))
        assert_throttled(
            client.post(
                "/o/token/",
                urlencode(exchange_form()),
                content_type="application/x-www-form-urlencoded",
                REMOTE_ADDR="198.51.100.7",
                HTTP_AUTHORIZATION=cast["agent1"].basic,
            )
        )
        other = client.generic("POST", "/o/token/", "%zz", REMOTE_ADDR="198.51.100.8")
        assert other.status_code == 400


def test_throttling_is_off_without_rates(cast, token_endpoint):
    with with_idp(THROTTLE_RATES={}):
        statuses = {token_endpoint(exchange_form(), cast["agent1"]).status_code for _ in range(20)}
    assert statuses == {400}


def test_repeated_authentication_failures_lock_the_client_id_out(cast, clients, token_endpoint, user_token):
    with with_idp(CLIENT_AUTH_FAILURE_LIMIT=3, CLIENT_AUTH_FAILURE_WINDOW=120):
        for _ in range(3):
            assert_oauth_error(
                token_endpoint(exchange_form(), clients["wrong-secret"]), 401, "invalid_client"
            )
        before = snapshot()
        # The right secret does not help while the client id is slowed down.
        wait = assert_throttled(token_endpoint(exchange_form(user_token), cast["agent1"]))
        assert wait == 120
        assert snapshot() == before
        # Other clients are unaffected.
        assert token_endpoint(exchange_form(), cast["agent2"]).status_code == 400


def test_a_lockout_does_not_follow_the_client_id_to_another_address(
    cast, clients, token_endpoint, user_token
):
    """Anyone can claim an agent's client id: failures from one address must not lock
    the agent out at its own address."""
    with with_idp(CLIENT_AUTH_FAILURE_LIMIT=3, CLIENT_AUTH_FAILURE_WINDOW=120):
        for _ in range(3):
            response = token_endpoint(exchange_form(), clients["wrong-secret"], REMOTE_ADDR="203.0.113.9")
            assert_oauth_error(response, 401, "invalid_client")
        assert_throttled(token_endpoint(exchange_form(user_token), cast["agent1"], REMOTE_ADDR="203.0.113.9"))
        assert token_endpoint(exchange_form(user_token), cast["agent1"]).status_code == 200


def test_introspection_is_throttled_and_size_limited(cast, client, user_token):
    agent = cast["agent1"]
    with with_idp(THROTTLE_RATES={"address": "2/min"}):
        for _ in range(2):
            ok = client.post("/o/introspect/", {"token": user_token}, HTTP_AUTHORIZATION=agent.basic)
            assert ok.status_code == 200 and ok.json()["active"] is True
        limited = client.post("/o/introspect/", {"token": user_token}, HTTP_AUTHORIZATION=agent.basic)
        assert_oauth_error(limited, 429, "slow_down")
        assert int(limited["Retry-After"]) >= 1
    big = client.post(
        "/o/introspect/",
        urlencode({"token": "x" * 40_000}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=agent.basic,
    )
    assert_oauth_error(big, 413, "invalid_request")


def test_introspection_failures_lock_that_client_id_at_that_address(cast, client, clients, user_token):
    with with_idp(CLIENT_AUTH_FAILURE_LIMIT=2, CLIENT_AUTH_FAILURE_WINDOW=60):
        for _ in range(2):
            bad = client.post(
                "/o/introspect/", {"token": user_token}, HTTP_AUTHORIZATION=clients["wrong-secret"].basic
            )
            assert bad.status_code == 401
        limited = client.post(
            "/o/introspect/", {"token": user_token}, HTTP_AUTHORIZATION=cast["agent1"].basic
        )
        assert_oauth_error(limited, 429, "slow_down")
        assert int(limited["Retry-After"]) == 60


def test_failures_below_the_limit_do_not_lock(cast, clients, token_endpoint, user_token):
    with with_idp(CLIENT_AUTH_FAILURE_LIMIT=3):
        for _ in range(2):
            token_endpoint(exchange_form(), clients["wrong-secret"])
        assert token_endpoint(exchange_form(user_token), cast["agent1"]).status_code == 200


def test_cache_keys_are_fixed_size_whatever_the_client_id(cast, client):
    """Client ids are attacker-chosen: spaces, unicode, 10 kB. Keys stay short and valid."""
    hostile = "x" * 10_000 + " \u0430\u200b"
    raw = base64.b64encode(f"{hostile}:secret".encode()).decode()
    with with_idp(THROTTLE_RATES={"client": "1/min"}, CLIENT_AUTH_FAILURE_LIMIT=1):
        response = client.post(
            "/o/token/",
            urlencode(exchange_form()),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION="Basic " + raw,
        )
        assert_oauth_error(response, 401, "invalid_client")
        keys = list(cache._cache.keys())  # LocMemCache internals: the stored keys
    assert keys, "the failure was counted"
    assert all(len(k) < 100 and hostile not in k for k in keys)


def test_parse_rate():
    assert throttling.parse_rate("600/min") == (600, 60)
    assert throttling.parse_rate("5/s") == (5, 1)
    assert throttling.parse_rate("10/day") == (10, 86400)
    assert throttling.parse_rate(None) is None


def test_cache_down_leaves_the_endpoint_open_and_says_so(cast, token_endpoint, user_token, caplog):
    closed = f"redis://127.0.0.1:{free_port()}/6"
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": closed,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    caplog.set_level(logging.WARNING, logger="delegation_idp")
    with override_settings(CACHES=caches), with_idp(THROTTLE_RATES={"client": "1/min", "address": "1/min"}):
        from django.core.cache import caches as live

        live["default"].close()
        for _ in range(3):
            response = token_endpoint(exchange_form(user_token), cast["agent1"])
            assert response.status_code == 200, response.content
        assert_oauth_error(
            token_endpoint(
                exchange_form(), cast["agent1"].__class__("agent1", cast["agent1"].client_id, "wrong", "", "")
            ),
            401,
            "invalid_client",
        )
    assert "throttle cache unreachable" in caplog.text
    assert user_token not in caplog.text


# -- shared across processes ------------------------------------------------------------


@pytest.mark.integration
def test_limit_is_shared_between_two_processes_through_redis(tmp_path, redis_url):
    """Two gunicorn instances, one Redis (DB 6): requests to either count against one limit."""
    from tests import procs

    shared = redis_url.rsplit("/", 1)[0] + "/6"
    import redis

    redis.Redis.from_url(shared).flushdb()
    env = procs.site_env(
        tmp_path,
        issuer="http://127.0.0.1",
        redis_url=shared,
        IDP_THROTTLE_RATES="client=4/day",
    )
    with procs.cluster(tmp_path, env) as cluster:
        agent1 = procs.seed(env)["agents"]["agent1"]
        first, second = cluster.gunicorn(), cluster.gunicorn()
        auth = (agent1["client_id"], agent1["client_secret"])
        statuses = []
        for base in (first, second, first, second, second, first):
            response = httpx.post(f"{base}/o/token/", data=exchange_form(), auth=auth, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["error"] == "slow_down"
    redis.Redis.from_url(shared).flushdb()
    assert statuses == [400, 400, 400, 400, 429, 429], statuses


def test_settings_default_rates_are_on():
    from delegation_idp.conf import DEFAULTS

    assert throttling.parse_rate(DEFAULTS["THROTTLE_RATES"]["client"]) == (600, 60)
    assert throttling.parse_rate(DEFAULTS["THROTTLE_RATES"]["address"]) == (1200, 60)
    assert idp_settings.CLIENT_AUTH_FAILURE_LIMIT >= 1
