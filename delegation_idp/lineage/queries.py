"""Read models over lineage: a token's subtree and tree, and who acted for a user."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from delegation_idp.core.actchain import chain_from_act
from delegation_idp.lineage.revocation import subtree_q
from delegation_idp.models import TokenLineage

logger = logging.getLogger(__name__)


def subtree(jti: str) -> Iterable[TokenLineage]:
    node = TokenLineage.objects.filter(jti=jti).first()
    if node is None:
        return []
    return TokenLineage.objects.filter(subtree_q(node.path)).order_by("depth", "issued_at")


def tree(jti: str) -> list[TokenLineage]:
    """The whole tree ``jti`` belongs to, from the root token down, in depth-first order."""
    node = TokenLineage.objects.filter(jti=jti).only("root_jti").first()
    if node is None:
        return []
    rows = list(TokenLineage.objects.filter(root_jti=node.root_jti).order_by("path"))
    return rows


@dataclass(frozen=True)
class ActedFor:
    """One actor chain that held tokens for a user (newest actor first)."""

    chain: tuple[str, ...]
    client_id: str
    tokens: int
    first: datetime
    last: datetime
    live: int


def acted_for_user(user_pk: Any, now: datetime | None = None) -> list[ActedFor]:
    """Who has acted on this user's behalf: every distinct chain, newest use first."""
    now = now or timezone.now()
    grouped: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    rows = (
        TokenLineage.objects.filter(user_id=user_pk)
        .values("act", "client_id")
        .annotate(
            n=Count("pk"),
            first=Min("issued_at"),
            last=Max("issued_at"),
            live=Count("pk", filter=Q(revoked_at__isnull=True, expires_at__gt=now)),
        )
        .order_by()
    )
    for row in rows:
        chain = chain_from_act(row["act"], max_depth=64) if row["act"] else ()
        key = (chain, row["client_id"])
        entry = grouped.setdefault(key, {"n": 0, "first": row["first"], "last": row["last"], "live": 0})
        entry["n"] += row["n"]
        entry["live"] += row["live"]
        entry["first"] = min(entry["first"], row["first"])
        entry["last"] = max(entry["last"], row["last"])
    result = [
        ActedFor(
            chain=chain, client_id=client_id, tokens=e["n"], first=e["first"], last=e["last"], live=e["live"]
        )
        for (chain, client_id), e in grouped.items()
    ]
    return sorted(result, key=lambda a: a.last, reverse=True)
