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
"""

from __future__ import annotations

import logging
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

from .conf import idp_settings

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
    """Write and read back a short-lived key in the throttling cache."""
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
    """Open (and close) one connection to the Celery broker, without retrying."""
    from celery import current_app

    if current_app.conf.task_always_eager:
        return {"eager": True}
    with current_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0, timeout=idp_settings.HEALTH_CHECK_TIMEOUT)
    return {"eager": False}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}


def run_checks() -> tuple[bool, bool, dict[str, dict[str, Any]]]:
    """``(required checks passed, all checks passed, per-check results)``."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            details = check()
            ok = True
        except Exception as exc:
            # The exception text may carry a URL with credentials: log its type only.
            logger.warning("health check %s failed: %s", name, type(exc).__name__)
            details, ok = {}, False
        results[name] = {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1), **details}
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
