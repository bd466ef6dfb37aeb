"""The provider's own key set: signing, verification by ``kid``, rotation, revocation.

The life of a key (``SigningKey.state``)::

    next ──(one JWKS cache lifetime later)──> current ──(next takes over)──> retired ──> removed
      └──────────────── revoked (emergency: unpublished at once, its tokens revoked) ◄─────┘

* ``next``: published in the JWKS, not signing yet, so every cache has it before
  the first token it signs exists;
* ``current``: exactly one, signing (a partial unique index forbids two);
* ``retired``: published, not signing, until every token it signed has expired
  plus clock skew plus the JWKS cache lifetime, then deleted with its private key.

Service functions hold the logic; management commands, admin actions and the
thin Celery tasks call them. Private keys are decrypted only for the
``current`` key; verification uses the published public members.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings

from delegation_idp import jose, signals
from delegation_idp.conf import SETTING_NAME, idp_settings, rotation_check_seconds
from delegation_idp.models import SigningKey, TokenLineage

logger = logging.getLogger(__name__)

__all__ = [
    "KeySet",
    "RotationResult",
    "ensure_current_key",
    "keyset",
    "published_jwks",
    "retention_after_retirement",
    "revoke_key",
    "rotate_keys",
    "rotation_check_seconds",
]

PUBLISHED_STATES = (SigningKey.NEXT, SigningKey.CURRENT, SigningKey.RETIRED)
# JWK members that carry private or symmetric key material (RFC 7518 section 6).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeyMismatch(jose.JoseError):
    """A decrypted private key that is not the key its row publishes."""


@dataclass(frozen=True)
class _Snapshot:
    """One consistent copy of the key set, swapped in whole."""

    current: jose.SigningKey | None = None
    public: Mapping[str, jose.SigningKey] = field(default_factory=dict)
    remove_after: Mapping[str, datetime | None] = field(default_factory=dict)


class KeySet:
    """This process's copy of the published key set.

    The copy is trusted for ``KEY_CACHE_SECONDS``; a ``kid`` it does not know
    triggers a reload, at most once per ``KEY_RELOAD_MIN_INTERVAL``, so a flood
    of tokens with invented ``kid`` values cannot turn into a flood of queries.
    Since a ``next`` key is in the database a whole JWKS cache lifetime before
    it signs, every process normally knows it long before it meets a token
    signed with it; the reload on a miss covers emergency replacements.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic  # replaceable in tests; wall-clock time plays no part here
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._last_miss_reload = float("-inf")
        self._snapshot = _Snapshot()
        self.loads = 0  # how many times this process read the key set (for tests and metrics)

    def invalidate(self) -> None:
        """Forget the copy: the next use reads the database again."""
        with self._lock:
            self._loaded_at = float("-inf")

    def _load(self) -> None:
        rows = list(
            SigningKey.objects.filter(state__in=PUBLISHED_STATES).only(
                "kid", "alg", "state", "public_jwk", "private_key", "remove_after"
            )
        )
        previous = self._snapshot.current
        public: dict[str, jose.SigningKey] = {}
        remove_after: dict[str, datetime | None] = {}
        current = None
        for row in rows:
            if row.alg not in idp_settings.ALLOWED_ALGORITHMS:
                continue  # never verify with an algorithm that is off the allow-list
            public[row.kid] = jose.public_key(row.public_jwk)
            remove_after[row.kid] = row.remove_after
            if row.state == SigningKey.CURRENT:
                current = previous if previous is not None and previous.kid == row.kid else _decrypt(row)
        self._snapshot = _Snapshot(current=current, public=public, remove_after=remove_after)
        self._loaded_at = self.monotonic()
        self.loads += 1

    def _fresh(self) -> _Snapshot:
        if self.monotonic() - self._loaded_at > idp_settings.KEY_CACHE_SECONDS:
            with self._lock:
                if self.monotonic() - self._loaded_at > idp_settings.KEY_CACHE_SECONDS:
                    self._load()
        return self._snapshot

    def signing_key(self) -> jose.SigningKey:
        """The ``current`` key; creates the first key of a new site."""
        snapshot = self._fresh()
        if snapshot.current is None:
            ensure_current_key()
            with self._lock:
                self._load()
            snapshot = self._snapshot
        if snapshot.current is None:
            raise jose.JoseError("no_signing_key", "no current signing key on the allow-list")
        return snapshot.current

    def verification_key(self, kid: str) -> jose.SigningKey | None:
        """A published key by ``kid``, or None. Never a key named by a token itself."""
        snapshot = self._fresh()
        key = snapshot.public.get(kid)
        if key is None:
            with self._lock:
                now = self.monotonic()
                if now - self._last_miss_reload >= idp_settings.KEY_RELOAD_MIN_INTERVAL:
                    self._last_miss_reload = now
                    self._load()
                snapshot = self._snapshot
            key = snapshot.public.get(kid)
        if key is None:
            return None
        if _removed(snapshot.remove_after.get(kid), timezone.now()):
            return None  # its retention ended even if no rotation has deleted it yet
        return key

    def published(self) -> list[dict[str, Any]]:
        """The public JWKs of this process's copy (the JWKS view reads the database instead)."""
        snapshot = self._fresh()
        now = timezone.now()
        return [
            _public_members(key.public_jwk())
            for kid, key in sorted(snapshot.public.items())
            if not _removed(snapshot.remove_after.get(kid), now)
        ]


keyset = KeySet()


# The claims every access token of this provider carries (RFC 9068 section 2.2).
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")


def verify(token: str, *, now: float, leeway: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of one of this provider's JWT access tokens: verified by ``kid``
    against its own key set only, with the allow-listed algorithms, sizes checked before
    parsing (RFC 8725), then ``iss``, ``exp``/``nbf`` (``leeway``: ``CLOCK_SKEW_SECONDS`` by
    default) and the RFC 9068 claims. Raises :class:`delegation_idp.jose.JoseError`."""
    header, claims = jose.verify(
        token,
        keyset.verification_key,
        algorithms=idp_settings.ALLOWED_ALGORITHMS,
        max_bytes=idp_settings.MAX_TOKEN_BYTES,
        max_header_bytes=idp_settings.MAX_HEADER_BYTES,
        max_json_depth=idp_settings.MAX_JSON_DEPTH,
    )
    jose.validate_claims(
        claims,
        issuer=idp_settings.ISSUER,
        now=now,
        leeway=idp_settings.CLOCK_SKEW_SECONDS if leeway is None else leeway,
        required=REQUIRED_CLAIMS,
    )
    return header, claims


def _removed(remove_after: datetime | None, now: datetime) -> bool:
    return remove_after is not None and remove_after <= now


def _decrypt(row: SigningKey) -> jose.SigningKey:
    key = jose.decrypt_private_key(bytes(row.private_key), row.alg, idp_settings.KEY_ENCRYPTION_KEYS)
    if key.kid != row.kid:
        # Fernet authenticates each blob, but not which row it belongs to.
        raise KeyMismatch("key_mismatch", "the private key does not belong to this key row")
    return key


def _public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS}


def published_jwks(now: datetime | None = None) -> list[dict[str, Any]]:
    """The JWKS ``keys``, read from the database: ``next``, ``current`` and ``retired``
    keys within their retention, public members only, ordered by ``kid``.

    Read fresh (one small query) rather than from the per-process copy, so a
    revoked key leaves every process's JWKS at once and a new ``next`` key is
    in it from the moment it exists.
    """
    now = now or timezone.now()
    rows = list(
        SigningKey.objects.filter(state__in=PUBLISHED_STATES, alg__in=list(idp_settings.ALLOWED_ALGORITHMS))
        .exclude(remove_after__lte=now)
        .order_by("kid")
        .values_list("kid", "alg", "state", "public_jwk")
    )
    if not any(state == SigningKey.CURRENT for _kid, _alg, state, _jwk in rows) and (
        not SigningKey.objects.filter(state=SigningKey.CURRENT).exists()
    ):
        # A new site: publish the key its first token will be signed with.
        ensure_current_key()
        return published_jwks(now)
    return [{**_public_members(jwk), "kid": kid, "alg": alg, "use": "sig"} for kid, alg, _state, jwk in rows]


@dataclass(frozen=True)
class _Material:
    """A new key, generated and encrypted before any row lock is taken: RSA generation
    takes a noticeable time, and every issuance waits on the current key's row lock."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private_key: bytes


def _generate() -> _Material:
    key = jose.generate_key(idp_settings.SIGNING_ALGORITHM)
    return _Material(
        kid=key.kid,
        alg=key.alg,
        public_jwk=_public_members(key.public_jwk()),
        private_key=jose.encrypt_private_key(key, idp_settings.KEY_ENCRYPTION_KEYS),
    )


def _new_key(
    state: str, now: datetime, activates_at: datetime | None = None, material: _Material | None = None
) -> SigningKey:
    material = material or _generate()
    return SigningKey.objects.create(
        kid=material.kid,
        alg=material.alg,
        state=state,
        public_jwk=material.public_jwk,
        private_key=material.private_key,
        created=now,
        activates_at=activates_at or now,
    )


def longest_token_lifetime() -> int:
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
                    _new_key(SigningKey.CURRENT, now)
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
    cache = timedelta(seconds=idp_settings.JWKS_CACHE_SECONDS)
    period = timedelta(seconds=idp_settings.KEY_ROTATION_PERIOD)

    def due(current: SigningKey) -> bool:
        return force or (current.activates_at or current.created) + period - cache <= now

    # Unlocked look-ahead: will a new key be needed? Generate it before locking.
    current_now = SigningKey.objects.filter(state=SigningKey.CURRENT).first()
    material = None
    if (
        current_now is not None
        and due(current_now)
        and not SigningKey.objects.filter(state=SigningKey.NEXT).exists()
    ):
        material = _generate()
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
            upcoming = _new_key(SigningKey.NEXT, now, activates_at=now + cache, material=material)
            created = upcoming.kid
        if upcoming is not None and upcoming.activates_at is not None and upcoming.activates_at <= now:
            current.state = SigningKey.RETIRED
            current.retired_at = now
            current.remove_after = now + retention_after_retirement()
            current.save(update_fields=["state", "retired_at", "remove_after"])
            upcoming.state = SigningKey.CURRENT
            upcoming.save(update_fields=["state"])
            promoted, retired = upcoming.kid, current.kid
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
    material = _generate()  # a possible successor, generated before any lock is taken
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
                upcoming = _new_key(SigningKey.CURRENT, now, material=material)
            successor = upcoming.kid
    keyset.invalidate()
    revoked = _announce_revoked(kid, now)
    logger.warning("signing key %s revoked (was %s); %d tokens revoked", kid, previous, revoked)
    return RevocationResult(kid=kid, previous_state=previous, successor=successor, tokens_revoked=revoked)


def live_tokens_signed_by(kid: str, now: datetime | None = None) -> int:
    """How many unexpired, unrevoked tokens ``kid`` signed (for confirmation pages)."""
    now = now or timezone.now()
    return TokenLineage.objects.filter(kid=kid, revoked_at__isnull=True, expires_at__gt=now).count()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """The key cache depends on ``DELEGATION_IDP`` (the settings object reloads itself)."""
    if setting == SETTING_NAME:
        keyset.invalidate()


setting_changed.connect(_on_setting_changed, dispatch_uid="delegation_idp_keyset_settings")
