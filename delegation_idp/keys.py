"""The provider's own key set: signing, verification by ``kid``, rotation, revocation.

Service functions hold the logic; management commands, admin actions and the
thin Celery tasks call them. Private keys are decrypted only for the
``current`` key; verification uses the published public members.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings

from . import jose
from .conf import idp_settings
from .models import SigningKey

logger = logging.getLogger(__name__)

__all__ = ["KeySet", "ensure_current_key", "keyset", "revoke_key", "rotate_keys"]


class KeySet:
    """This process's copy of the published key set.

    The copy is trusted for ``KEY_CACHE_SECONDS``; a ``kid`` it does not know
    triggers a reload, at most once per ``KEY_RELOAD_MIN_INTERVAL``, so a flood
    of tokens with invented ``kid`` values cannot turn into a flood of queries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._last_miss_reload = float("-inf")
        self._current: jose.SigningKey | None = None
        self._public: dict[str, jose.SigningKey] = {}
        self._remove_after: dict[str, datetime | None] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def _load(self) -> None:
        rows = list(
            SigningKey.objects.filter(
                state__in=[SigningKey.NEXT, SigningKey.CURRENT, SigningKey.RETIRED]
            ).only("kid", "alg", "state", "public_jwk", "private_key", "remove_after")
        )
        public: dict[str, jose.SigningKey] = {}
        remove_after: dict[str, datetime | None] = {}
        current = None
        for row in rows:
            public[row.kid] = jose.public_key(row.public_jwk)
            remove_after[row.kid] = row.remove_after
            if row.state == SigningKey.CURRENT:
                if self._current is not None and self._current.kid == row.kid:
                    current = self._current  # already decrypted
                else:
                    current = jose.decrypt_private_key(
                        row.private_key, row.alg, idp_settings.KEY_ENCRYPTION_KEYS
                    )
        self._public, self._remove_after, self._current = public, remove_after, current
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > idp_settings.KEY_CACHE_SECONDS:
            with self._lock:
                if time.monotonic() - self._loaded_at > idp_settings.KEY_CACHE_SECONDS:
                    self._load()

    def signing_key(self) -> jose.SigningKey:
        """The ``current`` key; creates the first key of a new site."""
        self._fresh()
        if self._current is None:
            ensure_current_key()
            with self._lock:
                self._load()
        assert self._current is not None
        return self._current

    def verification_key(self, kid: str) -> jose.SigningKey | None:
        """A published key by ``kid``, or None. Never a key named by a token itself."""
        self._fresh()
        key = self._public.get(kid)
        if key is None:
            now = time.monotonic()
            if now - self._last_miss_reload >= idp_settings.KEY_RELOAD_MIN_INTERVAL:
                with self._lock:
                    self._last_miss_reload = now
                    self._load()
                key = self._public.get(kid)
        if key is None:
            return None
        remove_after = self._remove_after.get(kid)
        if remove_after is not None and remove_after <= timezone.now():
            return None
        return key

    def published(self) -> list[dict]:
        self._fresh()
        now = timezone.now()
        return [
            key.public_jwk()
            for kid, key in sorted(self._public.items())
            if self._remove_after.get(kid) is None or self._remove_after[kid] > now  # type: ignore[operator]
        ]


keyset = KeySet()


def _new_key(state: str, now: datetime, activates_at: datetime | None = None) -> SigningKey:
    key = jose.generate_key(idp_settings.SIGNING_ALGORITHM)
    return SigningKey.objects.create(
        kid=key.kid,
        alg=key.alg,
        state=state,
        public_jwk=key.public_jwk(),
        private_key=jose.encrypt_private_key(key, idp_settings.KEY_ENCRYPTION_KEYS),
        created=now,
        activates_at=activates_at or now,
    )


def longest_token_lifetime() -> int:
    return max(int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS), int(idp_settings.EXCHANGED_TOKEN_LIFETIME))


def retention_after_retirement() -> timedelta:
    """How long a retired key stays published: its last token's life, skew, caches."""
    return timedelta(
        seconds=longest_token_lifetime()
        + idp_settings.CLOCK_SKEW_SECONDS
        + idp_settings.JWKS_CACHE_SECONDS
        + idp_settings.KEY_CACHE_SECONDS
    )


def ensure_current_key(now: datetime | None = None) -> SigningKey:
    """Return the current key, creating one if the site has none (idempotent)."""
    now = now or timezone.now()
    for _attempt in range(3):
        existing = SigningKey.objects.filter(state=SigningKey.CURRENT).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                return _new_key(SigningKey.CURRENT, now)
        except IntegrityError:
            continue  # another process created it first: the unique constraint decided
    raise RuntimeError("could not establish a current signing key")


@dataclass(frozen=True)
class RotationResult:
    created: str | None = None
    promoted: str | None = None
    retired: str | None = None
    removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.created or self.promoted or self.retired or self.removed)


def rotate_keys(now: datetime | None = None, *, force: bool = False) -> RotationResult:
    """Advance the key life cycle by one step where it is due. Idempotent.

    * no ``next`` key and the current one is due within one JWKS cache lifetime:
      create ``next``, which starts signing one JWKS cache lifetime later;
    * a ``next`` key whose time has come: it becomes ``current``, the old one ``retired``;
    * a retired key past its retention: removed.

    ``force`` schedules a new key now (published for one JWKS cache lifetime first).
    Two concurrent calls are serialised by a row lock on the current key; the
    partial unique index guarantees never two current keys.
    """
    now = now or timezone.now()
    ensure_current_key(now)
    cache = timedelta(seconds=idp_settings.JWKS_CACHE_SECONDS)
    period = timedelta(seconds=idp_settings.KEY_ROTATION_PERIOD)
    created = promoted = retired = None
    with transaction.atomic():
        # The lock first, then fresh reads: under READ COMMITTED the later
        # statements see whatever a concurrent rotation committed before us.
        current = SigningKey.objects.select_for_update().get(state=SigningKey.CURRENT)
        upcoming = SigningKey.objects.filter(state=SigningKey.NEXT).order_by("activates_at").first()
        if upcoming is None and (force or (current.activates_at or current.created) + period - cache <= now):
            upcoming = _new_key(SigningKey.NEXT, now, activates_at=now + cache)
            created = upcoming.kid
        if upcoming is not None and upcoming.activates_at is not None and upcoming.activates_at <= now:
            current.state = SigningKey.RETIRED
            current.retired_at = now
            current.remove_after = now + retention_after_retirement()
            current.save(update_fields=["state", "retired_at", "remove_after"])
            upcoming.state = SigningKey.CURRENT
            upcoming.save(update_fields=["state"])
            promoted, retired = upcoming.kid, current.kid
        expired = list(
            SigningKey.objects.filter(state=SigningKey.RETIRED, remove_after__lte=now).values_list(
                "kid", flat=True
            )
        )
        if expired:
            SigningKey.objects.filter(kid__in=expired).delete()
    result = RotationResult(created=created, promoted=promoted, retired=retired, removed=tuple(expired))
    if result.changed:
        keyset.invalidate()
        logger.info(
            "signing keys rotated: created=%s promoted=%s retired=%s removed=%d",
            created,
            promoted,
            retired,
            len(expired),
        )
    return result


def revoke_key(kid: str, now: datetime | None = None) -> int:
    """Emergency revocation of a compromised key.

    The key leaves the JWKS at once, a new key takes over if it was signing,
    and every token it signed is revoked. Returns the number of tokens revoked.
    """
    from . import lineage

    now = now or timezone.now()
    with transaction.atomic():
        key = SigningKey.objects.select_for_update().get(kid=kid)
        was_current = key.state == SigningKey.CURRENT
        key.state = SigningKey.REVOKED
        key.revoked_at = now
        key.save(update_fields=["state", "revoked_at"])
        if was_current:
            upcoming = SigningKey.objects.filter(state=SigningKey.NEXT).order_by("activates_at").first()
            if upcoming is not None:
                upcoming.state = SigningKey.CURRENT
                upcoming.save(update_fields=["state"])
            else:
                _new_key(SigningKey.CURRENT, now)
    keyset.invalidate()
    revoked = lineage.revoke_signed_by(kid, reason="key_revoked")
    logger.warning("signing key %s revoked; %d tokens revoked", kid, revoked)
    return revoked
