"""The provider's Token Status Lists (draft-ietf-oauth-status-list): which entry each new
token gets, the signed lists, their publication and their retirement.

Allocation (sections 12.5 and 13.3) is :mod:`delegation_idp.provider.status_list_allocation`'s
job; :func:`allocate` adds the list's URI to the entry it hands out.

Publication. A token's bit is its lineage row's ``revoked_at``; revocation increments the
lists' ``version`` in the same transaction (:func:`delegation_idp.lineage.revocation.mark`).
:func:`publish_status_lists` signs every list whose ``version`` passed its ``signed_version``
(and every list whose signed token nears its ``exp``), so a crash between the revocation and
the signing loses nothing: the next run publishes it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from django.core.signals import setting_changed
from django.db.models import F, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from delegation_idp import breaker, jose, signals
from delegation_idp.conf import SETTING_NAME, idp_settings
from delegation_idp.models import SigningKey, StatusList, StatusListBlock, TokenLineage
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.status_list_allocation import POOL_MAX_AGE, next_entry, reset_pools
from delegation_idp.statuslist import TYP, compress, encode, list_token_claims, reference_claim

__all__ = [
    "POOL_MAX_AGE",
    "Allocation",
    "aggregation_uri",
    "allocate",
    "connect",
    "enabled",
    "list_uri",
    "live_lists",
    "mark_all_for_signing",
    "publish_status_lists",
    "request_publication",
    "reset",
    "retire_status_lists",
    "served",
    "sign_list",
]

logger = logging.getLogger(__name__)

PUBLISH_TASK = "delegation_idp.tasks.publish_status_lists"


@dataclass(frozen=True)
class Allocation:
    """One token's entry: index ``idx`` of the list numbered ``list_number``, at ``uri``."""

    list_number: int
    idx: int
    uri: str

    def claim(self) -> dict[str, Any]:
        """The token's ``status`` claim (section 6.2)."""
        return reference_claim(self.idx, self.uri)


def reset() -> None:
    """Forget every thread's reserved positions and the lists' URL (tests; settings changes)."""
    reset_pools()
    _base_url.cache_clear()


def allocate() -> Allocation:
    """A fresh entry for a token being issued (:mod:`.status_list_allocation`)."""
    entry = next_entry()
    return Allocation(entry.list_number, entry.idx, list_uri(entry.slug))


# -- where the lists are served ----------------------------------------------------------------


class _BaseUrl:
    """The URL prefix of the lists, resolved once per process (None: not mounted)."""

    def __init__(self) -> None:
        self._value: str | bool | None = False

    def cache_clear(self) -> None:
        self._value = False

    def __call__(self) -> str | None:
        if self._value is False:
            configured = idp_settings.STATUS_LIST_BASE_URL
            if configured:
                self._value = str(configured).rstrip("/")
            else:
                try:
                    path = reverse("oauth2_provider:status-lists")
                except NoReverseMatch:
                    self._value = None
                else:
                    issuer = urlsplit(idp_settings.ISSUER or "")
                    self._value = f"{issuer.scheme}://{issuer.netloc}{path}".rstrip("/")
        return self._value  # type: ignore[return-value]


_base_url = _BaseUrl()


def enabled() -> bool:
    """Whether new JWT access tokens carry a status reference: ``STATUS_LIST`` on, and the
    lists served somewhere (``delegation_idp.urls`` mounted, or ``STATUS_LIST_BASE_URL``)."""
    return bool(idp_settings.STATUS_LIST) and _base_url() is not None


def list_uri(slug: str) -> str:
    return f"{_base_url()}/{slug}"


def aggregation_uri() -> str:
    """The aggregation endpoint (section 9): this app's, at the issuer's origin."""
    issuer = urlsplit(idp_settings.ISSUER or "")
    return f"{issuer.scheme}://{issuer.netloc}{reverse('oauth2_provider:status-lists')}"


# -- signing and publication ----------------------------------------------------------------------


def _aware(now: datetime | None) -> datetime:
    return now or timezone.now()


def sign_list(row: StatusList, now: datetime | None = None) -> StatusList:
    """Sign ``row``'s list as it stands now and store it. The version is read before the
    bits: a revocation that commits in between is in the bits or leaves the list dirty."""
    now = _aware(now)
    version = StatusList.objects.filter(pk=row.number).values_list("version", flat=True).first()
    if version is None:
        return row
    revoked = (
        TokenLineage.objects.filter(status_list_id=row.number, revoked_at__isnull=False)
        .values_list("status_idx", flat=True)
        .iterator(chunk_size=10_000)
    )
    lst = compress(encode(row.size, (idx for idx in revoked if idx is not None and idx < row.size)))
    iat = int(now.timestamp())
    lifetime = int(idp_settings.STATUS_LIST_TOKEN_LIFETIME)
    claims = list_token_claims(
        uri=list_uri(row.slug),
        issuer=idp_settings.ISSUER,
        iat=iat,
        exp=iat + lifetime,
        ttl=int(idp_settings.STATUS_LIST_TTL),
        lst=lst,
        bits=row.bits,
        aggregation_uri=aggregation_uri(),
    )
    token = jose.sign(claims, _signing_key(), typ=TYP)
    fields = {
        "token": token,
        "etag": '"' + hashlib.sha256(token.encode("ascii")).hexdigest()[:32] + '"',
        "signed_at": now,
        "token_expires_at": now + timedelta(seconds=lifetime),
        "signed_version": version,
    }
    StatusList.objects.filter(pk=row.number, signed_version__lte=version).update(**fields)
    for name, value in fields.items():
        setattr(row, name, value)
    return row


def _signing_key() -> jose.SigningKey:
    """The ``current`` key, as the database has it now. A worker's key cache may still hold
    a key that another process revoked or replaced (``KEY_CACHE_SECONDS``); a list signed
    with it would name a ``kid`` that verifiers no longer find."""
    key = keyset.signing_key()
    if not SigningKey.objects.filter(kid=key.kid, state=SigningKey.CURRENT).exists():
        keyset.invalidate()
        key = keyset.signing_key()
    return key


def mark_all_for_signing() -> int:
    """Make every live list due for signing (in the caller's transaction): a key revocation
    does so, since the lists it signed name a ``kid`` that leaves the key set."""
    return StatusList.objects.filter(retired_at__isnull=True).update(version=F("version") + 1)


def _due(now: datetime) -> Q:
    renew_before = now + timedelta(seconds=int(idp_settings.STATUS_LIST_TOKEN_LIFETIME) / 2)
    return (
        Q(version__gt=F("signed_version"))
        | Q(token="")
        | Q(token_expires_at__isnull=True)
        | Q(token_expires_at__lt=renew_before)
    )


def publish_status_lists(now: datetime | None = None, *, force: bool = False) -> int:
    """Sign every live list that changed since it was last signed, or whose signed token is
    past half its lifetime (all live lists with ``force``). Returns how many were signed."""
    now = _aware(now)
    live = StatusList.objects.filter(retired_at__isnull=True)
    signed = 0
    for row in live if force else live.filter(_due(now)):
        sign_list(row, now)
        signed += 1
    if signed:
        logger.info("signed %d status lists", signed)
    return signed


def retire_status_lists(now: datetime | None = None) -> int:
    """Retire every list that a newer list replaced more than :data:`POOL_MAX_AGE` ago (so no
    process hands out its entries any more) and whose tokens have all expired; sweep spent
    block reservations. Returns how many lists were retired."""
    now = _aware(now)
    skew = timedelta(seconds=int(idp_settings.CLOCK_SKEW_SECONDS))
    rows = list(StatusList.objects.filter(retired_at__isnull=True).order_by("number"))
    retired = 0
    for row, newer in itertools.pairwise(rows):
        if newer.created_at > now - timedelta(seconds=POOL_MAX_AGE) - skew:
            continue
        live = TokenLineage.objects.filter(status_list_id=row.number, expires_at__gt=now - skew)
        if live.exists():
            continue
        retired += StatusList.objects.filter(pk=row.number, retired_at__isnull=True).update(
            retired_at=now, token="", etag=""
        )
    newest = StatusListBlock.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is not None:
        StatusListBlock.objects.filter(id__lt=newest).delete()
    return retired


def served(slug: str, now: datetime | None = None) -> StatusList | None:
    """The live list at ``slug`` with a signed token good for at least one ``ttl`` and
    current (signed now if the stored one is missing, about to expire or behind the list's
    ``version``), or None."""
    now = _aware(now)
    row = StatusList.objects.filter(slug=slug, retired_at__isnull=True).first()
    if row is None:
        return None
    margin = timedelta(seconds=int(idp_settings.STATUS_LIST_TTL))
    stale = row.token_expires_at is None or row.token_expires_at <= now + margin
    if not row.token or stale or row.version > row.signed_version:
        # A change not yet published (the queued publication lost, its broker down) is signed
        # here: a list due after a key revocation never goes on naming the revoked kid.
        row = sign_list(row, now)
    return row


def live_lists() -> list[str]:
    """The URIs of every live list (the aggregation, section 9.3)."""
    slugs = (
        StatusList.objects.filter(retired_at__isnull=True).order_by("number").values_list("slug", flat=True)
    )
    return [list_uri(slug) for slug in slugs]


def request_publication() -> None:
    """Queue :func:`publish_status_lists` now (best effort, through the broker's breaker):
    the beat schedule publishes within ``STATUS_LIST_PUBLISH_DELAY`` anyway."""

    def send() -> None:
        task = current_app.tasks.get(PUBLISH_TASK)
        if task is not None:
            task.apply_async(retry=False)  # honours task_always_eager
        else:  # a process that never imported the tasks module (a management shell)
            current_app.send_task(PUBLISH_TASK, retry=False)

    try:
        breaker.get(breaker.BROKER).call(send)
    except breaker.CircuitOpen:
        logger.info("broker unavailable: status lists left to the periodic publication")
    except Exception:
        logger.exception("could not queue the status list publication; the periodic one will run")


def on_token_revoked(sender: Any, jtis: list[str], reason: str, **kwargs: Any) -> None:
    """``token_revoked`` receiver: ask for the lists to be signed again at once."""
    if idp_settings.STATUS_LIST:
        request_publication()


def connect() -> None:
    """Connect :func:`on_token_revoked` (idempotent), from the app's ``ready()``."""
    signals.token_revoked.connect(on_token_revoked, dispatch_uid="delegation_idp_publish_status_lists")


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING_NAME, "SECRET_KEY", "ROOT_URLCONF"):
        reset()


setting_changed.connect(_on_setting_changed)
