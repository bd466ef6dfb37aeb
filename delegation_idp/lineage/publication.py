"""The revocation set published to Redis, so resource servers check revocation in O(1).

Key format (documented in ``docs/lineage.md``; ``delegation_idp.resource_server`` reads it):

* ``<REVOCATION_REDIS_PREFIX><jti>`` = the revocation reason, expiring with the
  token (remaining lifetime plus ``CLOCK_SKEW_SECONDS``, at least one second);
* ``<REVOCATION_REDIS_PREFIX>@published`` = Unix time of the last complete
  publication. ``@`` is outside the ``jti`` alphabet, so it never collides.

Keys are written right after a revocation commits (``publish``, from the
``token_revoked`` signal) and rewritten in full by ``publish_revocations``
(a Celery beat task and a management command), which repairs a flushed Redis.
The write after a revocation is on the request path: it goes through the
revocation set's circuit breaker (:mod:`delegation_idp.breaker`) with a short
socket timeout, so a hung Redis costs one such wait per process, and the
revocations it skips are published by the periodic task once Redis answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from delegation_idp import breaker
from delegation_idp.conf import idp_settings
from delegation_idp.models import TokenLineage

logger = logging.getLogger(__name__)

__all__ = ["heartbeat_key", "is_revoked", "key_for", "publish", "publish_revocations", "redis_client"]

HEARTBEAT_SUFFIX = "@published"
#: socket timeouts (seconds): the periodic task's full rewrite, and the request path's write
TASK_TIMEOUT = 5.0
REQUEST_TIMEOUT = 1.0

_clients: dict[tuple[str, float], Any] = {}
_lock = threading.Lock()


def redis_client(url: str | None = None, *, timeout: float = TASK_TIMEOUT) -> Any:
    """A Redis client for ``REVOCATION_REDIS_URL`` (one per URL, timeout and process), or None."""
    url = url or idp_settings.REVOCATION_REDIS_URL
    if not url:
        return None
    with _lock:
        client = _clients.get((url, timeout))
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            _clients[(url, timeout)] = client
        return client


def _breaker() -> breaker.Breaker:
    return breaker.get(breaker.REVOCATION_SET)


def key_for(jti: str, prefix: str | None = None) -> str:
    return (prefix if prefix is not None else idp_settings.REVOCATION_REDIS_PREFIX) + jti


def heartbeat_key(prefix: str | None = None) -> str:
    return key_for(HEARTBEAT_SUFFIX, prefix)


def is_revoked(client: Any, jti: str, prefix: str | None = None) -> bool:
    """The resource server's check: one ``EXISTS``."""
    return bool(client.exists(key_for(jti, prefix)))


def _ttl(expires_at: datetime, now: datetime) -> int:
    remaining = (expires_at - now).total_seconds() + idp_settings.CLOCK_SKEW_SECONDS
    return max(1, int(remaining) + 1)


def _write(client: Any, rows: Iterable[tuple[str, datetime, str]], now: datetime) -> int:
    prefix = idp_settings.REVOCATION_REDIS_PREFIX
    skew = idp_settings.CLOCK_SKEW_SECONDS
    pipe = client.pipeline(transaction=False)
    count = 0
    for jti, expires_at, reason in rows:
        if (expires_at - now).total_seconds() + skew <= 0:
            continue  # already dead everywhere: nothing to publish
        pipe.set(
            key_for(jti, prefix), (reason or "revoked").encode("ascii", "replace"), ex=_ttl(expires_at, now)
        )
        count += 1
    if count:
        pipe.execute()
    return count


def publish(jtis: list[str], now: datetime | None = None) -> int:
    """Publish these revoked tokens now (best effort: the periodic task repairs misses).

    Raises :class:`delegation_idp.breaker.CircuitOpen` without trying while the
    revocation set's breaker is open."""
    client = redis_client(timeout=REQUEST_TIMEOUT)
    if client is None or not jtis:
        return 0
    now = now or timezone.now()
    size = int(idp_settings.SWEEP_BATCH_SIZE)
    total = 0
    for start in range(0, len(jtis), size):
        rows = list(
            TokenLineage.objects.filter(
                jti__in=jtis[start : start + size], revoked_at__isnull=False
            ).values_list("jti", "expires_at", "revocation_reason")
        )
        total += _breaker().call(_write, client, rows, now)
    return total


def publish_revocations(
    now: datetime | None = None, batch_size: int | None = None, client: Any = None
) -> int:
    """Rewrite every revoked, unexpired ``jti`` in bounded batches; then the heartbeat.

    Returns the number of keys written (0 when publication is disabled).
    """
    client = client or redis_client()
    if client is None:
        return 0
    now = now or timezone.now()
    size = int(batch_size or idp_settings.SWEEP_BATCH_SIZE)
    live = TokenLineage.objects.filter(revoked_at__isnull=False, expires_at__gt=now).order_by("pk")
    last_pk: Any = None
    total = 0
    while True:
        page = live if last_pk is None else live.filter(pk__gt=last_pk)
        rows = list(page.values_list("pk", "jti", "expires_at", "revocation_reason")[:size])
        if not rows:
            break
        total += _write(client, ((jti, exp, reason) for _, jti, exp, reason in rows), now)
        last_pk = rows[-1][0]
    client.set(heartbeat_key(), str(int(time.time())))
    logger.info("published %d revoked tokens to Redis", total)
    return total


def on_token_revoked(sender: Any, jtis: list[str], reason: str, **kwargs: Any) -> None:
    """``token_revoked`` receiver: publish at once, never fail the revocation."""
    try:
        publish(list(jtis))
    except breaker.CircuitOpen:
        logger.info("revocation set unreachable; %d revoked tokens left to the periodic task", len(jtis))
    except Exception:
        logger.exception("could not publish %d revoked tokens to Redis; the periodic task will", len(jtis))
