"""Token lineage: where every issued token came from, and revocation that cascades.

A revocation marks the lineage rows of a token and of its whole subtree and
deletes their django-oauth-toolkit ``AccessToken`` rows, so both this app's
checks and django-oauth-toolkit's own resource protection refuse them at
once. Ancestors and siblings are never touched.

Race with an exchange: the exchange locks its parent's row (``SELECT ... FOR
UPDATE``) and re-checks it inside the transaction that stores the child. A
revocation first locks the subtree, which waits for any exchange holding a
lock in it, then marks the subtree in a new statement that sees the children
those exchanges committed. So no token escapes a committed revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from . import signals
from .claims import Issued
from .models import TokenLineage

logger = logging.getLogger(__name__)

__all__ = [
    "record_issued",
    "revoke_for_party",
    "revoke_for_user",
    "revoke_signed_by",
    "revoke_subtree",
]


class ParentRevoked(Exception):
    """The subject token of an exchange was revoked or expired meanwhile."""


def _ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def lock_parent(jti: str) -> TokenLineage:
    """Lock the subject token's row for the rest of the transaction and re-check it."""
    parent = TokenLineage.objects.select_for_update().filter(jti=jti).first()
    if parent is None or parent.revoked_at is not None or parent.expires_at <= timezone.now():
        raise ParentRevoked(jti)
    return parent


def record_issued(request: Any, issued: Issued, access_token: Any, grant_type: str) -> TokenLineage:
    """Store the lineage row of a token just issued (inside the issuance transaction)."""
    claims = issued.claims
    exchange = getattr(request, "delegation", None)
    jti = claims["jti"]
    if exchange is not None:
        lock_parent(exchange.parent_jti)
        parent_jti, root_jti = exchange.parent_jti, exchange.root_jti
        path, depth = f"{exchange.parent_path}/{jti}", exchange.depth
    else:
        parent_jti, root_jti, path, depth = "", jti, jti, 0
    user = getattr(request, "user", None)
    return TokenLineage.objects.create(
        jti=jti,
        parent_jti=parent_jti,
        root_jti=root_jti,
        path=path,
        depth=depth,
        grant_type=grant_type,
        user=user if getattr(user, "pk", None) is not None else None,
        subject=claims["sub"],
        client_id=claims["client_id"],
        audience=[claims["aud"]] if isinstance(claims["aud"], str) else list(claims["aud"]),
        scope=claims.get("scope", ""),
        act=claims.get("act"),
        parties="|" + "|".join(dict.fromkeys(issued.parties)) + "|" if issued.parties else "",
        kid=issued.kid,
        issued_at=_ts(claims["iat"]),
        expires_at=_ts(claims["exp"]),
        access_token=access_token,
    )


def _mark(queryset: QuerySet[TokenLineage], reason: str, now: datetime) -> list[str]:
    """Mark every unrevoked row of ``queryset`` and drop its ``AccessToken`` rows."""
    live = queryset.filter(revoked_at__isnull=True)
    rows = list(live.values_list("pk", "jti", "access_token_id"))
    if not rows:
        return []
    pks = [pk for pk, _, _ in rows]
    TokenLineage.objects.filter(pk__in=pks).update(
        revoked_at=now, revocation_reason=reason[:64], access_token=None
    )
    token_ids = [tid for _, _, tid in rows if tid is not None]
    if token_ids:
        # QuerySet.delete() sends post_delete per row; our handler sees the rows
        # already marked and does nothing more.
        get_access_token_model().objects.filter(pk__in=token_ids).delete()
    return [jti for _, jti, _ in rows]


def _subtree_q(path: str) -> Q:
    return Q(path=path) | Q(path__startswith=path + "/")


def _after_commit(jtis: list[str], reason: str) -> None:
    if not jtis:
        return

    def publish() -> None:
        signals.token_revoked.send(sender=TokenLineage, jtis=jtis, reason=reason)

    transaction.on_commit(publish)


def revoke_subtree(jti: str, reason: str = "revoked", now: datetime | None = None) -> list[str]:
    """Revoke a token and everything derived from it. Returns the revoked ``jti`` values."""
    now = now or timezone.now()
    with transaction.atomic():
        node = TokenLineage.objects.select_for_update().filter(jti=jti).first()
        if node is None:
            return []
        subtree = TokenLineage.objects.filter(_subtree_q(node.path))
        # Lock first (waits for exchanges that hold a row of the subtree), then
        # mark in a new statement that sees what they committed.
        list(subtree.select_for_update().values_list("pk", flat=True))
        revoked = _mark(subtree, reason, now)
        _after_commit(revoked, reason)
    return revoked


def _revoke_roots(matching: QuerySet[TokenLineage], reason: str, now: datetime) -> int:
    """Revoke the subtrees of every live row in ``matching``."""
    total = 0
    paths = list(matching.filter(revoked_at__isnull=True).values_list("path", flat=True))
    # Subtrees of rows already inside another matched subtree are covered by it.
    paths.sort(key=len)
    roots: list[str] = []
    for path in paths:
        if not any(path == r or path.startswith(r + "/") for r in roots):
            roots.append(path)
    with transaction.atomic():
        for path in roots:
            subtree = TokenLineage.objects.filter(_subtree_q(path))
            list(subtree.select_for_update().values_list("pk", flat=True))
            revoked = _mark(subtree, reason, now)
            _after_commit(revoked, reason)
            total += len(revoked)
    return total


def revoke_for_party(uri: str, reason: str = "party_disabled", now: datetime | None = None) -> int:
    """Every live token in which ``uri`` is the client, an audience or any actor."""
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(parties__contains=f"|{uri}|", expires_at__gt=now)
    return _revoke_roots(matching, reason, now)


def revoke_for_user(user_pk: Any, reason: str = "user_deactivated", now: datetime | None = None) -> int:
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(user_id=user_pk, expires_at__gt=now)
    return _revoke_roots(matching, reason, now)


def revoke_signed_by(kid: str, reason: str = "key_revoked", now: datetime | None = None) -> int:
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(kid=kid, expires_at__gt=now)
    return _revoke_roots(matching, reason, now)


def revoke_access_token_row(access_token_pk: Any, reason: str = "revoked") -> list[str]:
    """Called when django-oauth-toolkit deletes an ``AccessToken`` (RFC 7009 revocation,
    ``AccessToken.revoke()``); expired rows deleted by ``cleartokens`` are left alone."""
    row = (
        TokenLineage.objects.filter(access_token_id=access_token_pk, revoked_at__isnull=True)
        .only("jti", "expires_at")
        .first()
    )
    if row is None:
        return []
    if row.expires_at <= timezone.now():
        TokenLineage.objects.filter(pk=row.pk).update(access_token=None)
        return []
    return revoke_subtree(row.jti, reason)


def subtree(jti: str) -> Iterable[TokenLineage]:
    node = TokenLineage.objects.filter(jti=jti).first()
    if node is None:
        return []
    return TokenLineage.objects.filter(_subtree_q(node.path)).order_by("depth", "issued_at")
