"""The provider's own key set, as this process uses it: signing, verification by ``kid``,
and the published JWKS. The keys' life cycle (rotation, emergency revocation) is
:mod:`delegation_idp.provider.rotation`.

Private keys are decrypted only for the ``current`` key; verification uses the
published public members.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from django.utils import timezone

from delegation_idp import jose
from delegation_idp.conf import SETTING_NAME, idp_settings
from delegation_idp.models import SigningKey

logger = logging.getLogger(__name__)

__all__ = [
    "KeySet",
    "Material",
    "ensure_current_key",
    "generate_material",
    "keyset",
    "new_key",
    "published_jwks",
    "verify",
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
            public_members(key.public_jwk())
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


def public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
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
    return [{**public_members(jwk), "kid": kid, "alg": alg, "use": "sig"} for kid, alg, _state, jwk in rows]


@dataclass(frozen=True)
class Material:
    """A new key, generated and encrypted before any row lock is taken: RSA generation
    takes a noticeable time, and every issuance waits on the current key's row lock."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private_key: bytes


def generate_material() -> Material:
    key = jose.generate_key(idp_settings.SIGNING_ALGORITHM)
    return Material(
        kid=key.kid,
        alg=key.alg,
        public_jwk=public_members(key.public_jwk()),
        private_key=jose.encrypt_private_key(key, idp_settings.KEY_ENCRYPTION_KEYS),
    )


def new_key(
    state: str, now: datetime, activates_at: datetime | None = None, material: Material | None = None
) -> SigningKey:
    material = material or generate_material()
    return SigningKey.objects.create(
        kid=material.kid,
        alg=material.alg,
        state=state,
        public_jwk=material.public_jwk,
        private_key=material.private_key,
        created=now,
        activates_at=activates_at or now,
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
                return new_key(SigningKey.CURRENT, now)
        except IntegrityError:
            continue  # another process created it first: the unique constraint decided
    raise RuntimeError("could not establish a current signing key")


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """The key cache depends on ``DELEGATION_IDP`` (the settings object reloads itself)."""
    if setting == SETTING_NAME:
        keyset.invalidate()


setting_changed.connect(_on_setting_changed, dispatch_uid="delegation_idp_keyset_settings")
