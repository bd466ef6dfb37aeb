"""Per-process circuit breakers around the shared Redis: the cache, the broker and the
revocation set.

A hung Redis (stopped, or a network that drops packets) accepts connections and then
answers nothing, so every call waits out its socket timeout. A breaker turns that into
one bounded wait per process: the first failure or timeout *opens* it, and for
``BREAKER_RESET_SECONDS`` every caller takes its documented fallback at once (throttling
fails open, a revocation is published later by the periodic task, the health check
reports the dependency as failing). Then one call is let through as a probe
(*half-open*): its success closes the breaker, its failure opens it again.

One breaker per dependency and process, thread-safe. The lock guards only the state,
never the call itself, so concurrent callers are not serialised behind a slow one.
``pybreaker`` holds its lock across the protected call and reads the wall clock, so it
would queue every thread of a process behind one hung call and cannot be tested with
an injected clock; this module is the small part of it that is needed here.

Standard library only: ``delegation_idp.resource_server`` (a resource server without the app
installed) uses it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

__all__ = [
    "BROKER",
    "CACHE",
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "REVOCATION_SET",
    "Breaker",
    "CircuitOpen",
    "get",
    "reset_all",
]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
#: the dependencies on the request path, and what callers do while one's breaker is open
CACHE, BROKER, REVOCATION_SET = "throttle cache", "broker", "revocation set"
FALLBACKS = {
    CACHE: "throttling fails open meanwhile",
    BROKER: "the broker is reported as failing meanwhile",
    REVOCATION_SET: "revocations are published by the periodic task",
}
T = TypeVar("T")


class CircuitOpen(Exception):
    """The dependency failed recently: the call was not attempted."""

    def __init__(self, name: str) -> None:
        super().__init__(f"circuit {name!r} is open")
        self.name = name


class Breaker:
    """Closed -> (a failure) -> open -> (``reset_seconds`` later) -> half-open: one probe.

    ``reset_seconds`` is a number or a callable read at each opening (so a settings
    change applies without a restart); ``clock`` is a monotonic clock, injectable in tests.
    ``fallback`` names, for the one log line per opening, what callers do meanwhile.
    """

    def __init__(
        self,
        name: str,
        *,
        reset_seconds: float | Callable[[], float] = 15.0,
        clock: Callable[[], float] = time.monotonic,
        fallback: str = "",
    ) -> None:
        self.name = name
        self.fallback = fallback
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._opened_at = 0.0
        self._probing = False
        self.openings = 0  # how many times it opened from closed (for tests and metrics)

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self._reset():
                return HALF_OPEN
            return self._state

    def _reset(self) -> float:
        value = self._reset_seconds
        return float(value() if callable(value) else value)

    def allow(self) -> bool:
        """May a call go ahead now? While half-open only one caller (the probe) may."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN and self._clock() - self._opened_at >= self._reset():
                self._state = HALF_OPEN
                self._probing = False
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            was = self._state
            self._state, self._probing = CLOSED, False
        if was != CLOSED:
            logger.warning("%s answers again; circuit closed", self.name)

    def failure(self) -> None:
        """Record a failure or timeout: open (again) from now."""
        with self._lock:
            was = self._state
            self._state, self._opened_at, self._probing = OPEN, self._clock(), False
            if was == CLOSED:
                self.openings += 1
        if was == CLOSED:
            # Once per opening, not per request: a flood of identical warnings helps nobody.
            logger.warning(
                "%s unreachable; circuit open for %gs%s",
                self.name,
                self._reset(),
                f", {self.fallback}" if self.fallback else "",
            )

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` if allowed, else :class:`CircuitOpen`. Any exception
        it raises counts as a failure and propagates; callers take their fallback."""
        if not self.allow():
            raise CircuitOpen(self.name)
        try:
            result = func(*args, **kwargs)
        except BaseException:  # a worker timeout too: never leave a probe marked in flight
            self.failure()
            raise
        self.success()
        return result


_breakers: dict[str, Breaker] = {}
_registry_lock = threading.Lock()


def _default_reset() -> float:
    try:
        from delegation_idp.conf import idp_settings

        return float(idp_settings.BREAKER_RESET_SECONDS)
    except Exception:  # settings not configured (a bare resource server): the default
        return 15.0


def get(name: str) -> Breaker:
    """This process's breaker for ``name`` (created on first use)."""
    with _registry_lock:
        found = _breakers.get(name)
        if found is None:
            found = _breakers[name] = Breaker(
                name, reset_seconds=_default_reset, fallback=FALLBACKS.get(name, "")
            )
        return found


def reset_all() -> None:
    """Forget every breaker (tests; a forked process starts closed anyway)."""
    with _registry_lock:
        _breakers.clear()
