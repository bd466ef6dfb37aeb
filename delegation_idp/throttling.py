"""Token-endpoint throttling shared across processes through Django's cache.

Fixed windows per client id and per source address; repeated client
authentication failures lock a client id out for the rest of the window.
With the cache unreachable the endpoint stays open (and says so in the log):
availability of token issuance wins over rate limiting. Every cache call goes
through the cache's circuit breaker (:mod:`delegation_idp.breaker`), so a hung
cache costs one socket timeout per process, then nothing until it answers again.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.core.cache import caches

from . import breaker
from .conf import idp_settings

logger = logging.getLogger(__name__)


def _cache_breaker() -> breaker.Breaker:
    return breaker.get(breaker.CACHE)


_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` -> ``(600, 60)``."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip().lower()]


def _digest(ident: str) -> str:
    """A fixed-size cache key part: client ids and addresses are attacker-chosen text
    (any length, spaces, control characters), which some cache backends refuse."""
    return hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _hit(key: str, limit: int, period: int) -> int | None:
    """Count a hit; the seconds to wait if over the limit, else None."""
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    window = int(time.time() // period)
    full_key = f"delegation_idp:throttle:{key}:{window}"

    def count_hit() -> int:
        if cache.add(full_key, 1, timeout=period + 1):
            return 1
        try:
            return int(cache.incr(full_key))
        except ValueError:  # expired between add and incr
            return 1

    try:
        count = _cache_breaker().call(count_hit)
    except Exception:
        return None  # fail open; the breaker logged the opening once
    if count > limit:
        return max(1, int(period - time.time() % period))
    return None


def _limit(scope: str, ident: str | None) -> int | None:
    parsed = parse_rate((idp_settings.THROTTLE_RATES or {}).get(scope))
    if not parsed or not ident:
        return None
    return _hit(f"{scope}:{_digest(ident)}", *parsed)


def check_address(address: str | None) -> int | None:
    """The per-address limit, counted before the body is even read, so floods of
    malformed requests are limited too. Seconds to wait, or None."""
    return _limit("address", address)


def check_client(client_id: str, address: str | None) -> int | None:
    """The per-client limit and the authentication-failure lockout. Seconds to wait, or None.

    Failures count per client id *and* source address: anyone can claim an agent's
    client id (every token carries it), so a lockout keyed by the id alone would let
    them lock the agent out everywhere."""
    if client_id and _failures(client_id, address) >= idp_settings.CLIENT_AUTH_FAILURE_LIMIT:
        return int(idp_settings.CLIENT_AUTH_FAILURE_WINDOW)
    return _limit("client", client_id)


def _failure_key(client_id: str, address: str | None) -> str:
    return f"delegation_idp:authfail:{_digest(client_id)}:{_digest(address or '')}"


def _failures(client_id: str, address: str | None) -> int:
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    try:
        return int(_cache_breaker().call(cache.get, _failure_key(client_id, address)) or 0)
    except Exception:
        return 0


def note_auth_failure(client_id: str, address: str | None) -> None:
    if not client_id:
        return
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    key = _failure_key(client_id, address)

    def count_failure() -> None:
        if not cache.add(key, 1, timeout=idp_settings.CLIENT_AUTH_FAILURE_WINDOW):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=idp_settings.CLIENT_AUTH_FAILURE_WINDOW)

    try:
        _cache_breaker().call(count_failure)
    except Exception:
        # Not counted while the cache is unreachable; the breaker logged the opening once.
        logger.debug("authentication failure not counted: cache unreachable")
