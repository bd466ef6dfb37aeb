"""The life of the provider's signing keys: rotation and emergency revocation.

The life of a key (``SigningKey.state``)::

    next ──(one JWKS cache lifetime later)──> current ──(next takes over)──> retired ──> removed
      └──────────────── revoked (emergency: unpublished at once, its tokens revoked) ◄─────┘

* ``next``: published in the JWKS, not signing yet, so every cache has it before
  the first token it signs exists;
* ``current``: exactly one, signing (a partial unique index forbids two);
* ``retired``: published, not signing, until every token it signed has expired
  plus clock skew plus the JWKS cache lifetime, then deleted with its private key.

Service functions hold the logic; management commands, admin actions and the
thin Celery tasks call them. A revoked key is announced with the
``signing_key_revoked`` signal; lineage's receiver revokes the tokens it signed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings

from delegation_idp import signals
from delegation_idp.conf import idp_settings, rotation_check_seconds
from delegation_idp.models import SigningKey, TokenLineage
from delegation_idp.provider import status_lists
from delegation_idp.provider.keys import ensure_current_key, generate_material, keyset, new_key

logger = logging.getLogger(__name__)

__all__ = [
    "RevocationResult",
    "RotationResult",
    "Schedule",
    "live_tokens_signed_by",
    "retention_after_retirement",
    "revoke_key",
    "rotate_keys",
    "rotation_check_seconds",
    "schedule",
]


def longest_token_lifetime() -> int:
    """The longest an access token signed with a key lives. Status List Tokens do not count:
    a promotion or a revocation signs every list anew at once, so a list signed with a
    retired key lives on only in HTTP caches, for at most its ``ttl``."""
    return max(int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS), int(idp_settings.EXCHANGED_TOKEN_LIFETIME))


def _publication_margin() -> timedelta:
    """Skew plus the JWKS cache lifetime: how long a key outlives its last token."""
    return timedelta(seconds=idp_settings.CLOCK_SKEW_SECONDS + idp_settings.JWKS_CACHE_SECONDS)


def retention_after_retirement() -> timedelta:
    """How long a retired key stays published after retirement: the longest token
    life, plus the per-process cache (a process may sign with it that much longer),
    plus clock skew, plus the JWKS cache lifetime."""
    return timedelta(seconds=longest_token_lifetime() + idp_settings.KEY_CACHE_SECONDS) + (
        _publication_margin()
    )


def _lock_current(now: datetime) -> SigningKey:
    """Lock the current key's row (inside a transaction); the serialisation point
    of every change of the key set.

    Under READ COMMITTED a ``SELECT ... FOR UPDATE WHERE state='current'`` that
    waited for a concurrent rotation re-checks the row it waited for, which is
    no longer current, and the newly promoted row was not current when the
    statement began: it finds nothing. A new statement sees the new current key.
    """
    for _attempt in range(5):
        current = SigningKey.objects.select_for_update().filter(state=SigningKey.CURRENT).first()
        if current is not None:
            return current
        if not SigningKey.objects.filter(state=SigningKey.CURRENT).exists():
            with transaction.atomic():  # a savepoint: a lost race leaves the outer transaction usable
                try:
                    new_key(SigningKey.CURRENT, now)
                except IntegrityError:
                    pass
    raise RuntimeError("could not lock the current signing key")


@dataclass(frozen=True)
class RotationResult:
    created: str | None = None
    promoted: str | None = None
    retired: str | None = None
    removed: tuple[str, ...] = ()
    extended: tuple[str, ...] = ()
    tokens_revoked: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.promoted or self.retired or self.removed or self.extended)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "promoted": self.promoted,
            "retired": self.retired,
            "removed": list(self.removed),
            "extended": list(self.extended),
            "tokens_revoked": self.tokens_revoked,
        }


def _publish_due_at(current: SigningKey) -> datetime:
    """When a rotation publishes the next key after ``current``: ``KEY_ROTATION_PERIOD``
    after it started signing, less one JWKS cache lifetime (so that key signs on time)."""
    period = timedelta(seconds=idp_settings.KEY_ROTATION_PERIOD)
    return (current.activates_at or current.created) + period - _jwks_cache()


def _jwks_cache() -> timedelta:
    return timedelta(seconds=idp_settings.JWKS_CACHE_SECONDS)


@dataclass(frozen=True)
class Schedule:
    """What rotation does next, as :func:`rotate_keys` decides it (for the admin's keys page).

    The beat runs :func:`rotate_keys` every :func:`rotation_check_seconds`, so each step
    happens at the time given or up to one check period later.
    """

    #: the key signing now (None before the first key exists)
    current: str | None
    #: the published ``next`` key waiting to take over, if there is one
    upcoming: str | None
    #: when a new ``next`` key is published (None: one is already waiting)
    publish_at: datetime | None
    #: when the current key stops signing: the waiting key's time, else one JWKS cache
    #: lifetime after the new key is published
    switch_at: datetime | None


def schedule() -> Schedule:
    """When the next rotation is due, by the rule :func:`rotate_keys` applies. Reads only."""
    current = SigningKey.objects.filter(state=SigningKey.CURRENT).first()
    upcoming = SigningKey.objects.filter(state=SigningKey.NEXT).order_by("activates_at").first()
    if upcoming is not None:
        return Schedule(
            current=current.kid if current else None,
            upcoming=upcoming.kid,
            publish_at=None,
            switch_at=upcoming.activates_at,
        )
    if current is None:
        return Schedule(current=None, upcoming=None, publish_at=None, switch_at=None)
    publish_at = _publish_due_at(current)
    return Schedule(
        current=current.kid, upcoming=None, publish_at=publish_at, switch_at=publish_at + _jwks_cache()
    )


def rotate_keys(now: datetime | None = None, *, force: bool = False) -> RotationResult:
    """Advance the key life cycle where it is due. Idempotent; run it every
    :func:`rotation_check_seconds` (the beat schedule does).

    * no ``next`` key and the current one is due within one JWKS cache lifetime
      (``KEY_ROTATION_PERIOD`` after it started signing): create ``next``, which
      starts signing one JWKS cache lifetime later;
    * a ``next`` key whose time has come: it becomes ``current``, the old one
      ``retired`` with a removal time (:func:`retention_after_retirement`);
    * a retired key past its removal time: deleted, unless a token it signed
      still lives (then its removal is postponed);
    * tokens that a process signed with a revoked key before it learnt of the
      revocation: revoked.

    ``force`` schedules a new key now (published for one JWKS cache lifetime first).
    Concurrent calls are serialised by a row lock on the current key, and the
    partial unique index makes two current keys impossible.

    Every issuance share-locks the current key's row, so that lock is held only
    for the state flip: a new key is generated and encrypted before it is taken,
    and retired keys are removed in a transaction of their own that does not
    lock the current key. (Issuance also bounds its wait: ``ISSUANCE_LOCK_TIMEOUT``.)
    """

    now = now or timezone.now()
    ensure_current_key(now)
    cache = _jwks_cache()

    def due(current: SigningKey) -> bool:
        return force or _publish_due_at(current) <= now

    # Unlocked look-ahead: will a new key be needed? Generate it before locking.
    current_now = SigningKey.objects.filter(state=SigningKey.CURRENT).first()
    material = None
    if (
        current_now is not None
        and due(current_now)
        and not SigningKey.objects.filter(state=SigningKey.NEXT).exists()
    ):
        material = generate_material()
    created = promoted = retired = None
    removed: list[str] = []
    extended: list[str] = []
    with transaction.atomic():
        current = _lock_current(now)
        # Fresh statements after the lock see what a concurrent change committed;
        # the next rows are locked too, so a revocation of one cannot interleave.
        upcoming = (
            SigningKey.objects.select_for_update()
            .filter(state=SigningKey.NEXT)
            .order_by("activates_at")
            .first()
        )
        if upcoming is None and due(current):
            # Without look-ahead material (a concurrent change made it needed) generate here.
            upcoming = new_key(SigningKey.NEXT, now, activates_at=now + cache, material=material)
            created = upcoming.kid
        if upcoming is not None and upcoming.activates_at is not None and upcoming.activates_at <= now:
            current.state = SigningKey.RETIRED
            current.retired_at = now
            current.remove_after = now + retention_after_retirement()
            current.save(update_fields=["state", "retired_at", "remove_after"])
            upcoming.state = SigningKey.CURRENT
            upcoming.save(update_fields=["state"])
            promoted, retired = upcoming.kid, current.kid
            if idp_settings.STATUS_LIST:
                status_lists.mark_all_for_signing()  # with the new key, before the old one goes
    with transaction.atomic():
        # Retired keys past their removal time: their own row locks (a concurrent
        # revocation of one re-checks its state after the lock), not the current key's.
        for key in SigningKey.objects.select_for_update().filter(
            state=SigningKey.RETIRED, remove_after__lte=now
        ):
            last_exp = TokenLineage.objects.filter(kid=key.kid).aggregate(last=Max("expires_at"))["last"]
            keep_until = last_exp + _publication_margin() if last_exp is not None else None
            if keep_until is not None and keep_until > now:
                # A token outlives the plan (longer lifetimes configured since): keep publishing.
                key.remove_after = keep_until
                key.save(update_fields=["remove_after"])
                extended.append(key.kid)
            else:
                removed.append(key.kid)
        if removed:
            SigningKey.objects.filter(kid__in=removed).delete()
    tokens_revoked = _sweep_revoked(now)
    result = RotationResult(
        created=created,
        promoted=promoted,
        retired=retired,
        removed=tuple(removed),
        extended=tuple(extended),
        tokens_revoked=tokens_revoked,
    )
    if result.changed:
        keyset.invalidate()
        if promoted and idp_settings.STATUS_LIST:
            transaction.on_commit(status_lists.request_publication)
        logger.info(
            "signing keys rotated: created=%s promoted=%s retired=%s removed=%d extended=%d",
            created,
            promoted,
            retired,
            len(removed),
            len(extended),
        )
    return result


def _sweep_revoked(now: datetime) -> int:
    """Revoke live, unrevoked tokens signed by keys revoked recently (belt and braces:
    issuance already refuses a revoked key under a shared lock on its row)."""
    horizon = now - retention_after_retirement()
    kids = list(
        SigningKey.objects.filter(state=SigningKey.REVOKED, revoked_at__gte=horizon).values_list(
            "kid", flat=True
        )
    )
    if not kids:
        return 0
    stragglers = set(
        TokenLineage.objects.filter(kid__in=kids, revoked_at__isnull=True, expires_at__gt=now).values_list(
            "kid", flat=True
        )
    )
    return sum(_announce_revoked(str(kid), now) for kid in sorted(stragglers))


def _announce_revoked(kid: str, now: datetime) -> int:
    """Send ``signing_key_revoked``; lineage's receiver revokes every live token ``kid``
    signed and answers how many. Receivers' errors propagate: a key revocation that
    could not revoke its tokens must not look done."""
    results: list[tuple[Any, Any]] = signals.signing_key_revoked.send(sender=SigningKey, kid=kid, now=now)
    return sum(result for _receiver, result in results if isinstance(result, int))


@dataclass(frozen=True)
class RevocationResult:
    kid: str
    previous_state: str
    successor: str | None
    tokens_revoked: int


def revoke_key(kid: str, now: datetime | None = None) -> RevocationResult:
    """Emergency revocation of a compromised key.

    In one transaction the key leaves the JWKS (its private key is wiped) and,
    if it was signing, a successor takes over: the published ``next`` key if
    there is one, else a new key. Then every live token it signed is revoked,
    with everything derived from it. Revoking a revoked key only repeats the
    token revocation. Raises ``SigningKey.DoesNotExist`` for an unknown ``kid``.
    """
    now = now or timezone.now()
    successor = None
    material = generate_material()  # a possible successor, generated before any lock is taken
    with transaction.atomic():
        key = SigningKey.objects.select_for_update().get(kid=kid)
        previous = key.state
        if previous != SigningKey.REVOKED:
            key.state = SigningKey.REVOKED
            key.revoked_at = now
            key.remove_after = None
            key.private_key = b""  # the database no longer holds a compromised private key
            key.save(update_fields=["state", "revoked_at", "remove_after", "private_key"])
        if previous == SigningKey.CURRENT:
            upcoming = (
                SigningKey.objects.select_for_update()
                .filter(state=SigningKey.NEXT)
                .order_by("activates_at")
                .first()
            )
            if upcoming is not None:
                upcoming.state = SigningKey.CURRENT
                upcoming.activates_at = now
                upcoming.save(update_fields=["state", "activates_at"])
            else:
                upcoming = new_key(SigningKey.CURRENT, now, material=material)
            successor = upcoming.kid
        # The status lists it signed name a kid that just left the key set: sign them anew.
        lists_due = status_lists.mark_all_for_signing() if idp_settings.STATUS_LIST else 0
    keyset.invalidate()
    if lists_due:
        transaction.on_commit(status_lists.request_publication)  # a caller's transaction first
    revoked = _announce_revoked(kid, now)
    logger.warning("signing key %s revoked (was %s); %d tokens revoked", kid, previous, revoked)
    return RevocationResult(kid=kid, previous_state=previous, successor=successor, tokens_revoked=revoked)


def live_tokens_signed_by(kid: str, now: datetime | None = None) -> int:
    """How many unexpired, unrevoked tokens ``kid`` signed (for confirmation pages)."""
    now = now or timezone.now()
    return TokenLineage.objects.filter(kid=kid, revoked_at__isnull=True, expires_at__gt=now).count()
