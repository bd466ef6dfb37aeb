"""A health endpoint for load balancers and orchestrators.

``GET /health/`` answers JSON naming each shared dependency and whether this
process reaches it::

    {"status": "ok", "checks": {
        "database": {"ok": true, "ms": 1.2},
        "cache": {"ok": true, "ms": 0.4, "shared": true},
        "broker": {"ok": true, "ms": 2.1, "eager": false}}}

The status is ``503`` when a check named in ``HEALTH_REQUIRED_CHECKS`` fails
(by default only the database, the store of record), ``200`` otherwise, with
``"status": "degraded"`` when an optional check fails. The cache and the
broker are optional by default on purpose: the token endpoint keeps issuing
and revoking without Redis (throttling fails open, revocation lives in the
database), and every web process shares the same Redis, so making it required
would let one Redis outage take every instance out of the load balancer at
once. The answer names no hosts, URLs or error messages.

The answer comes within ``HEALTH_CHECK_TIMEOUT`` seconds (plus a few
milliseconds), whatever the dependencies do: every check runs in its own
thread, all at once, and a check still running at the deadline is reported as
``{"ok": false, "timeout": true}`` (a stopped Redis accepts connections and
answers nothing). The cache and broker checks go through their circuit
breakers (:mod:`delegation_idp.breaker`): while one is open the check reports
``{"ok": false, "circuit": "open"}`` at once, a failure or timeout opens it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required

from delegation_idp import breaker
from delegation_idp.conf import idp_settings

logger = logging.getLogger(__name__)

__all__ = ["CHECKS", "HealthView", "check_broker", "check_cache", "check_database", "run_checks"]

#: cache backends whose contents live in one process only
_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def check_database() -> dict[str, Any]:
    """One round trip to the default database."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_cache() -> dict[str, Any]:
    """Write and read back a short-lived key in the throttling cache (through its breaker)."""
    return breaker.get(breaker.CACHE).call(_check_cache)


def _check_cache() -> dict[str, Any]:
    alias = idp_settings.THROTTLE_CACHE_ALIAS
    cache = caches[alias]
    key = f"delegation_idp:health:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(key)
    backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
    return {"shared": backend not in _LOCAL_CACHES}


def check_broker() -> dict[str, Any]:
    """Open (and close) one connection to the Celery broker, without retrying (through its breaker)."""
    from celery import current_app

    if current_app.conf.task_always_eager:
        return {"eager": True}
    return breaker.get(breaker.BROKER).call(_check_broker, current_app)


def _check_broker(app: Any) -> dict[str, Any]:
    timeout = float(idp_settings.HEALTH_CHECK_TIMEOUT)
    # Socket timeouts for the Redis transport: without them a stopped Redis (connection
    # accepted, nothing answered) keeps this thread waiting forever.
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **(app.conf.broker_transport_options or {}),
    }
    with app.connection_for_write(transport_options=options, connect_timeout=timeout) as connection:
        # On Redis this opens a channel, which sends a PING: the TCP connect alone
        # succeeds on a stopped Redis.
        connection.ensure_connection(max_retries=0, timeout=timeout)
    return {"eager": False}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}


#: the breaker each check feeds when it times out
_BREAKERS = {"cache": breaker.CACHE, "broker": breaker.BROKER}


def _run(name: str, check: Callable[[], dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
    started = time.perf_counter()
    try:
        details, ok = check(), True
    except breaker.CircuitOpen:
        details, ok = {"circuit": "open"}, False
    except Exception as exc:
        # The exception text may carry a URL with credentials: log its type only.
        logger.warning("health check %s failed: %s", name, type(exc).__name__)
        details, ok = {}, False
    finally:
        connections.close_all()  # this thread's own database connections
    results[name] = {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1), **details}


def run_checks() -> tuple[bool, bool, dict[str, dict[str, Any]]]:
    """``(required checks passed, all checks passed, per-check results)``, within
    ``HEALTH_CHECK_TIMEOUT`` seconds: the checks run at once, one thread each."""
    started = time.monotonic()
    deadline = started + float(idp_settings.HEALTH_CHECK_TIMEOUT)
    finished: dict[str, dict[str, Any]] = {}
    threads = {
        name: threading.Thread(target=_run, args=(name, check, finished), name=f"health-{name}", daemon=True)
        for name, check in CHECKS.items()
    }
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    results: dict[str, dict[str, Any]] = {}
    for name in CHECKS:
        if name in finished:
            results[name] = finished[name]
            continue
        # Still waiting: a hung dependency. Report it now; the thread ends on its socket timeout.
        logger.warning("health check %s timed out", name)
        if name in _BREAKERS:
            breaker.get(_BREAKERS[name]).failure()
        results[name] = {"ok": False, "timeout": True, "ms": round((time.monotonic() - started) * 1000, 1)}
    required = set(idp_settings.HEALTH_REQUIRED_CHECKS)
    return (
        all(r["ok"] for n, r in results.items() if n in required),
        all(r["ok"] for r in results.values()),
        results,
    )


@method_decorator(login_not_required, name="dispatch")
class HealthView(View):
    """Reachability of the database, the cache and the broker: 200, or 503 if a required one fails."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        required_ok, all_ok, results = run_checks()
        status = "ok" if all_ok else ("degraded" if required_ok else "unavailable")
        response = JsonResponse({"status": status, "checks": results}, status=200 if required_ok else 503)
        response["Cache-Control"] = "no-store"
        return response
