"""The revocation set published to Redis, so resource servers check revocation in O(1).

Key format (documented in ``docs/lineage.md``; ``delegation_idp.contrib`` reads it):

* ``<REVOCATION_REDIS_PREFIX><jti>`` = the revocation reason, expiring with the
  token (remaining lifetime plus ``CLOCK_SKEW_SECONDS``, at least one second);
* ``<REVOCATION_REDIS_PREFIX>@published`` = Unix time of the last complete
  publication. ``@`` is outside the ``jti`` alphabet, so it never collides.

Keys are written right after a revocation commits (``publish``, from the
``token_revoked`` signal) and rewritten in full by ``publish_revocations``
(a Celery beat task and a management command), which repairs a flushed Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from .conf import idp_settings
from .models import TokenLineage

logger = logging.getLogger(__name__)

__all__ = ["heartbeat_key", "is_revoked", "key_for", "publish", "publish_revocations", "redis_client"]

HEARTBEAT_SUFFIX = "@published"

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def redis_client(url: str | None = None) -> Any:
    """A Redis client for ``REVOCATION_REDIS_URL`` (one per URL and process), or None."""
    url = url or idp_settings.REVOCATION_REDIS_URL
    if not url:
        return None
    with _lock:
        client = _clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _clients[url] = client
        return client


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
    """Publish these revoked tokens now (best effort: the periodic task repairs misses)."""
    client = redis_client()
    if client is None or not jtis:
        return 0
    now = now or timezone.now()
    size = int(idp_settings.SWEEP_BATCH_SIZE)
    total = 0
    for start in range(0, len(jtis), size):
        rows = TokenLineage.objects.filter(
            jti__in=jtis[start : start + size], revoked_at__isnull=False
        ).values_list("jti", "expires_at", "revocation_reason")
        total += _write(client, rows, now)
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
    except Exception:
        logger.exception("could not publish %d revoked tokens to Redis; the periodic task will", len(jtis))
