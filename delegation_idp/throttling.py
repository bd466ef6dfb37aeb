"""Token-endpoint throttling shared across processes through Django's cache.

Fixed windows per client id and per source address; repeated client
authentication failures lock a client id out for the rest of the window.
With the cache unreachable the endpoint stays open (and says so in the log):
availability of token issuance wins over rate limiting.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import caches

from .conf import idp_settings

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` -> ``(600, 60)``."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip().lower()]


def _hit(key: str, limit: int, period: int) -> int | None:
    """Count a hit; the seconds to wait if over the limit, else None."""
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    window = int(time.time() // period)
    full_key = f"delegation_idp:throttle:{key}:{window}"
    try:
        added = cache.add(full_key, 1, timeout=period + 1)
        count = 1 if added else cache.incr(full_key)
    except ValueError:
        count = 1
    except Exception:
        logger.warning("throttle cache unreachable; token endpoint not rate limited")
        return None
    if count > limit:
        return max(1, int(period - time.time() % period))
    return None


def check(client_id: str, address: str | None) -> int | None:
    """Seconds to wait before retrying, or None when the request may go on."""
    rates = idp_settings.THROTTLE_RATES or {}
    if client_id and _failures(client_id) >= idp_settings.CLIENT_AUTH_FAILURE_LIMIT:
        return idp_settings.CLIENT_AUTH_FAILURE_WINDOW
    for scope, ident in (("client", client_id), ("address", address)):
        parsed = parse_rate(rates.get(scope))
        if parsed and ident:
            wait = _hit(f"{scope}:{ident}", *parsed)
            if wait is not None:
                return wait
    return None


def _failure_key(client_id: str) -> str:
    return f"delegation_idp:authfail:{client_id[:200]}"


def _failures(client_id: str) -> int:
    try:
        return int(caches[idp_settings.THROTTLE_CACHE_ALIAS].get(_failure_key(client_id)) or 0)
    except Exception:
        return 0


def note_auth_failure(client_id: str) -> None:
    if not client_id:
        return
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    key = _failure_key(client_id)
    try:
        if not cache.add(key, 1, timeout=idp_settings.CLIENT_AUTH_FAILURE_WINDOW):
            cache.incr(key)
    except Exception:
        logger.warning("throttle cache unreachable; authentication failures not counted")
