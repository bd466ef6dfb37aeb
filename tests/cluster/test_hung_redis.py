"""The production layout with a hung Redis: a private redis-server (cache, broker and
revocation set) is stopped with SIGSTOP, not killed, under a steady load of exchanges
across two gunicorn instances, then resumed.

While it is stopped, each web process pays at most one socket timeout per breaker
period (the first cache call opens its breaker, then one probe per
``BREAKER_RESET_SECONDS``); every exchange succeeds; ``/health/`` answers within
``HEALTH_CHECK_TIMEOUT`` naming cache and broker as failing. Once it answers again,
throttling counts again and the revocation set is republished by beat and the worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from example_project.demo_services.management.commands.demo import user_token
from tests.cluster.conftest import start_layout
from tests.cluster.private_redis import PrivateRedis, module_private_redis  # noqa: F401
from tests.cluster.test_cluster import Site
from tests.conftest import free_port
from tests.helpers import decode
from tests.procs import cluster, site_env

pytestmark = pytest.mark.integration

SOCKET_TIMEOUT = 1.0  # the example site's cache socket timeout
BREAKER_RESET = 4  # IDP_BREAKER_RESET_SECONDS
HEALTH_TIMEOUT = 2  # HEALTH_CHECK_TIMEOUT's default
PUBLISH_EVERY = 3  # IDP_REVOCATION_PUBLISH_SECONDS
STOPPED_FOR = 14.0
NORMAL = 0.5  # an exchange slower than this waited on Redis


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    cluster_database: str,
    module_private_redis: PrivateRedis,  # noqa: F811
) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("hung-redis")
    url = module_private_redis.url(0)
    ports = {"a": free_port(), "b": free_port()}
    issuer = f"http://127.0.0.1:{ports['a']}"
    env = site_env(
        tmp_path,
        issuer=issuer,
        database_url=cluster_database,
        broker_url=url,
        redis_url=url,
        IDP_CLIENT_SECRET_HMAC_KEY="cluster-test-hmac-key-not-for-production",
        IDP_BREAKER_RESET_SECONDS=str(BREAKER_RESET),
        IDP_REVOCATION_PUBLISH_SECONDS=str(PUBLISH_EVERY),
        WEB_CONCURRENCY="1",
        CELERY_CONCURRENCY="1",
        CELERY_BEAT_SCHEDULE_FILENAME=str(tmp_path / "celerybeat-schedule"),
    )
    with cluster(tmp_path, env, migrate=False) as procs:
        cast, web = start_layout(procs, env, ports)
        yield Site(procs, env, cast, issuer, url, web=web, ports=ports)


@dataclass
class Load:
    """One exchange loop per instance, each result recorded as (start, seconds, ok)."""

    site: Site
    subject: str
    results: dict[str, list[tuple[float, float, bool]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, instance: str) -> None:
        client = self.site.client("agent1", instance)
        record = self.results.setdefault(instance, [])
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                client.exchange(self.subject, audience=self.site.uri("agent2"), use_cache=False)
                ok = True
            except Exception as exc:  # every failure is reported
                ok = False
                self.errors.append(f"{instance}: {type(exc).__name__}: {exc}")
            record.append((started, time.monotonic() - started, ok))
            time.sleep(0.1)

    def between(self, instance: str, start: float, end: float) -> list[tuple[float, float, bool]]:
        return [r for r in self.results.get(instance, []) if start <= r[0] < end]


def health(url: str) -> tuple[dict[str, Any], float, int]:
    started = time.monotonic()
    response = httpx.get(f"{url}/health/", timeout=35)
    return response.json(), time.monotonic() - started, response.status_code


def test_a_stopped_redis_costs_one_bounded_wait_per_process_then_recovers(
    site: Site,
    module_private_redis: PrivateRedis,  # noqa: F811
) -> None:
    store = redis.Redis.from_url(site.redis_url, socket_timeout=5)
    root = user_token(site.web["a"], site.cast)
    victim = user_token(site.web["b"], site.cast)
    load = Load(site, root)
    loops = [threading.Thread(target=load.run, args=(name,), daemon=True) for name in site.web]
    for loop in loops:
        loop.start()
    try:
        time.sleep(3)
        module_private_redis.stop()
        stopped_at = time.monotonic()
        # /health/ within its bound, cache and broker named as failing, while the load runs.
        for url in site.web.values():
            body, elapsed, status = health(url)
            # A sync worker serves one request at a time: the probe may queue behind one
            # exchange that is paying its socket timeout.
            assert elapsed < HEALTH_TIMEOUT + SOCKET_TIMEOUT + 1, f"/health/ took {elapsed:.1f}s"
            assert status == 200 and body["status"] == "degraded", body
            assert body["checks"]["database"]["ok"] is True
            assert body["checks"]["cache"]["ok"] is False and body["checks"]["broker"]["ok"] is False
        # A revocation while Redis is hung: answered at once, published after recovery.
        revoked = httpx.post(
            f"{site.web['b']}/o/revoke_token/",
            data={"token": victim, "token_type_hint": "access_token"},
            auth=(site.cast["agents"]["agent1"]["client_id"], site.cast["agents"]["agent1"]["client_secret"]),
            timeout=35,
        )
        assert revoked.status_code == 200
        time.sleep(max(0.0, STOPPED_FOR - (time.monotonic() - stopped_at)))
        module_private_redis.cont()
        resumed_at = time.monotonic()
        store.delete(*store.keys("*delegation_idp:throttle:*") or ["-"])
        time.sleep(BREAKER_RESET + 3)
    finally:
        load.stop.set()
        for loop in loops:
            loop.join(60)
    assert not load.errors, load.errors[:5]

    # Per process: one socket timeout on opening, then at most one probe per breaker period
    # (each probe a socket timeout of its own, on a cache call of one request).
    # Plus two that queued behind this test's own /health/ and revocation requests on the
    # instance's one sync worker (a /health/ holds it up to HEALTH_CHECK_TIMEOUT).
    allowed = 1 + math.ceil(STOPPED_FOR / BREAKER_RESET) + 2
    for instance in site.web:
        during = load.between(instance, stopped_at, resumed_at)
        assert len(during) > 20, "the load kept running while Redis was stopped"
        slow = [seconds for _, seconds, _ in during if seconds > NORMAL]
        assert len(slow) <= allowed, f"{instance}: {len(slow)} slow exchanges (allowed {allowed}): {slow}"
        assert max(seconds for _, seconds, _ in during) < SOCKET_TIMEOUT + HEALTH_TIMEOUT + NORMAL
        fast = sorted(seconds for _, seconds, _ in during if seconds <= NORMAL)
        assert fast[len(fast) // 2] < NORMAL / 2, "near-normal latency once the breaker is open"

    # Recovery: throttling counts again, the revocation set is republished.
    assert store.keys("*delegation_idp:throttle:*"), "throttling writes its counts again"
    jti = decode(victim)[1]["jti"]
    deadline = time.monotonic() + 60
    while not store.exists(f"delegation_idp:revoked:{jti}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.exists(f"delegation_idp:revoked:{jti}"), "the revocation set was republished"
    for url in site.web.values():
        body, elapsed, _ = health(url)
        assert body["status"] == "ok", body
    store.close()
