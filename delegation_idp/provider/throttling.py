"""Throttling and lockouts shared across processes through Django's cache.

Fixed windows per client id and per source address; repeated client
authentication failures lock a client id out (at that address) for the rest of
the window; repeated wrong passwords lock a username at that address, and the
address, out of user sign-in (:mod:`delegation_idp.provider.signin`).
With the cache unreachable the endpoint stays open (and says so in the log):
availability of token issuance wins over rate limiting. Every cache call goes
through the cache's circuit breaker (:mod:`delegation_idp.breaker`), so a hung
cache costs one socket timeout per process, then nothing until it answers again.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.core.cache import caches

from delegation_idp import breaker
from delegation_idp.conf import idp_settings

logger = logging.getLogger(__name__)


def _cache_breaker() -> breaker.Breaker:
    return breaker.get(breaker.CACHE)


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Any, ...]:
    """``TRUSTED_PROXIES`` parsed once per value, not on every request."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in proxies)


def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(meta: Mapping[str, Any] | None) -> str | None:
    """The source address every throttle and lockout counts against.

    ``REMOTE_ADDR``; or, when that is one of the ``TRUSTED_PROXIES`` (addresses or networks
    of the site's own load balancers), the right-most address of ``X-Forwarded-For`` that
    is not a trusted proxy: the one the outermost trusted proxy saw. Values to the left of
    it were written by the client and are never believed; a value that is not an IP address
    ends the walk at the proxy. ``meta`` is a Django request's ``META`` (or oauthlib's
    copy of it in ``request.headers``)."""
    if not meta:
        return None
    remote = str(meta.get("REMOTE_ADDR") or "") or None
    networks = _networks(tuple(idp_settings.TRUSTED_PROXIES or ()))
    if remote is None or not networks or not _trusted(remote, networks):
        return remote
    nearest = remote
    for hop in reversed(str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")):
        hop = hop.strip()
        try:
            hop = str(ipaddress.ip_address(hop))
        except ValueError:
            return nearest
        if not _trusted(hop, networks):
            return hop
        nearest = hop
    return nearest


_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` -> ``(600, 60)``."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip().lower()]


def counted_address(address: str) -> str:
    """What an address counts as: itself, or for IPv6 its /64 network, since one host is
    handed a whole /64 and could otherwise take a fresh counter with every request."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


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
    return _limit("address", counted_address(address) if address else address)


def check_client(client_id: str, address: str | None) -> int | None:
    """The per-client limit and the authentication-failure lockout. Seconds to wait, or None.

    Failures count per client id *and* source address: anyone can claim an agent's
    client id (every token carries it), so a lockout keyed by the id alone would let
    them lock the agent out everywhere."""
    if client_id and _failures(client_id, address) >= idp_settings.CLIENT_AUTH_FAILURE_LIMIT:
        return int(idp_settings.CLIENT_AUTH_FAILURE_WINDOW)
    return _limit("client", client_id)


def _failure_key(client_id: str, address: str | None) -> str:
    return f"delegation_idp:authfail:{_digest(client_id)}:{_digest(counted_address(address or ''))}"


def _failures(client_id: str, address: str | None) -> int:
    return _count(_failure_key(client_id, address))


def note_auth_failure(client_id: str, address: str | None) -> None:
    """Count a failed client authentication against the identity its credentials named."""
    if not client_id:
        return
    _bump(_failure_key(client_id, address), int(idp_settings.CLIENT_AUTH_FAILURE_WINDOW))


# -- failure counters (the cache operations every lockout goes through, behind the breaker) --


def _count(key: str) -> int:
    """A failure counter's value; 0 with the cache unreachable (the lockout stays open)."""
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    try:
        return int(_cache_breaker().call(cache.get, key) or 0)
    except Exception:
        return 0


def _bump(key: str, window: int) -> None:
    """Add one to a failure counter that expires ``window`` seconds after its first failure."""
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]

    def count_failure() -> None:
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=window)

    try:
        _cache_breaker().call(count_failure)
    except Exception:
        # Not counted while the cache is unreachable; the breaker logged the opening once.
        logger.debug("failure not counted: cache unreachable")


def _forget(key: str) -> None:
    cache = caches[idp_settings.THROTTLE_CACHE_ALIAS]
    try:
        _cache_breaker().call(cache.delete, key)
    except Exception:
        logger.debug("sign-in failures not cleared: cache unreachable")


# -- user sign-in (delegation_idp.provider.signin) -------------------------------------------------


def _sign_in_keys(username: str | None, address: str) -> tuple[str | None, str]:
    """The (username, address) counter and the address counter. Usernames are case-folded,
    so ``Alice`` and ``alice`` share one count wherever a backend treats them alike."""
    address = counted_address(address)
    per_address = f"delegation_idp:signin:address:{_digest(address)}"
    if not username:
        return None, per_address
    return f"delegation_idp:signin:user:{_digest(username.casefold())}:{_digest(address)}", per_address


def check_sign_in(username: str | None, address: str | None) -> int | None:
    """Seconds to wait when this username at this address, or this address, has had too many
    wrong passwords; else None.

    Never keyed by the username alone: anyone can type a user's name, so a lockout that
    followed the name would let anyone lock the user out everywhere. An attacker locks out
    only themselves (their own address), and a user keeps signing in from their own."""
    if not address:
        return None
    pair, per_address = _sign_in_keys(username, address)
    limit, address_limit = idp_settings.SIGN_IN_FAILURE_LIMIT, idp_settings.SIGN_IN_ADDRESS_FAILURE_LIMIT
    if (pair and limit and _count(pair) >= limit) or (address_limit and _count(per_address) >= address_limit):
        return int(idp_settings.SIGN_IN_FAILURE_WINDOW)
    return None


def note_sign_in_failure(username: str | None, address: str | None) -> None:
    """Count a wrong password for this username at this address, and for the address."""
    if not address:
        return  # not an online attempt (a script or a command calling authenticate())
    window = int(idp_settings.SIGN_IN_FAILURE_WINDOW)
    for key in _sign_in_keys(username, address):
        if key is not None:
            _bump(key, window)


def clear_sign_in_failures(username: str | None, address: str | None) -> None:
    """After a successful sign-in: that user's count at that address starts again. The
    address count stays, so one valid account cannot reset a spraying attacker's count."""
    pair, _per_address = _sign_in_keys(username, address or "")
    if address and pair is not None:
        _forget(pair)
