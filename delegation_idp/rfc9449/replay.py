"""Where seen DPoP proof ``jti`` values are kept (RFC 9449 section 11.1).

:meth:`ReplayStore.first_use` records a key and answers whether it was new, atomically, so
that of two processes that see the same proof at once exactly one accepts it:

* :class:`CacheReplayStore`: a Django cache's ``add`` (Redis's ``SET NX`` with django-redis
  or Django's own Redis cache; the one for a deployment of several processes);
* :class:`RedisReplayStore`: a redis-py client, for a resource server without Django's cache;
* :class:`MemoryReplayStore`: this process only (tests and a single-process server). A
  system check refuses it, and a per-process cache, for a multi-process deployment.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

__all__ = [
    "CacheReplayStore",
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
]

PREFIX = "delegation_idp:dpop:"


def _key(key: str) -> str:
    # Fixed length whatever the client sent: a cache key is never attacker-sized.
    return PREFIX + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class ReplayStoreUnavailable(Exception):
    """The store could not answer (its server down or hung): the proof cannot be checked, so
    it is refused, never accepted unchecked."""


class ReplayStore(Protocol):
    def first_use(self, key: str, ttl: int) -> bool:
        """Record ``key`` for ``ttl`` seconds; True when it was not recorded already."""
        ...


class CacheReplayStore:
    """A Django cache, by alias (looked up on each use, so settings changes apply)."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def first_use(self, key: str, ttl: int) -> bool:
        from django.core.cache import caches

        try:
            return bool(caches[self.alias].add(_key(key), 1, timeout=ttl))
        except Exception as exc:  # the cache backend's own errors (redis, memcached, ...)
            raise ReplayStoreUnavailable(type(exc).__name__) from exc


class RedisReplayStore:
    """A redis-py client (``SET key 1 NX EX ttl``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def first_use(self, key: str, ttl: int) -> bool:
        try:
            return bool(self.client.set(_key(key), 1, nx=True, ex=ttl))
        except Exception as exc:  # redis-py's ConnectionError, TimeoutError, ...
            raise ReplayStoreUnavailable(type(exc).__name__) from exc


class MemoryReplayStore:
    """This process's memory, bounded: the oldest entries go first once ``max_entries`` are
    held (a proof older than its window is refused by its ``iat`` anyway)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, key: str, ttl: int) -> bool:
        now = time.monotonic()
        hashed = _key(key)
        with self._lock:
            while self._seen:
                oldest, expiry = next(iter(self._seen.items()))
                if expiry > now and len(self._seen) < self.max_entries:
                    break
                del self._seen[oldest]
            if hashed in self._seen:
                return False
            self._seen[hashed] = now + ttl
            return True
