"""Delegation policy as stored: the database rows one decision needs, as policy views.

The token-exchange grant and the admin's "try a delegation" page both go
through :func:`load`, so the page shows exactly what the token endpoint would
answer. Every call reads the database afresh: there is no per-process cache,
so a rule or party edited in the admin (or by another process) governs the
very next request in every web worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from . import policy
from .conf import idp_settings
from .models import DelegationRule, Party

__all__ = ["load", "rules_for"]


def rules_for(party: Party) -> list[policy.RuleView]:
    """Every rule of ``party`` as an actor, enabled or not (the evaluator checks
    ``enabled`` itself, so a disabled rule is reported as not in effect)."""
    rows = (
        DelegationRule.objects.filter(actor=party)
        .select_related("actor")
        .prefetch_related("audiences", "upstream_actors", "users", "groups")
    )
    return [rule.as_view() for rule in rows]


def load(
    party: Party,
    chain: tuple[str, ...],
    targets: Iterable[str],
    *,
    subject_scope: frozenset[str],
    requested_scope: frozenset[str] | None,
    user: Any = None,
    may_act: Any = None,
    now: datetime | None = None,
) -> tuple[policy.ExchangeContext, list[policy.RuleView], policy.Limits]:
    """The evaluator's three inputs for ``party`` acting on a token with ``chain``."""
    targets = tuple(targets)
    uris = {party.uri, *chain, *targets}
    parties = {p.uri: p.as_view() for p in Party.objects.filter(uri__in=uris)}
    rules = rules_for(party)
    group_ids: frozenset[Any] = frozenset()
    if user is not None and any(rule.group_ids for rule in rules):
        group_ids = frozenset(user.groups.values_list("pk", flat=True))
    ctx = policy.ExchangeContext(
        requester=party.as_view(),
        chain=chain,
        targets=targets,
        subject_scope=subject_scope,
        requested_scope=requested_scope,
        now=now or timezone.now(),
        parties=parties,
        user_id=getattr(user, "pk", None),
        group_ids=group_ids,
        may_act=may_act,
        issuer=idp_settings.ISSUER,
    )
    limits = policy.Limits(
        max_depth=idp_settings.MAX_DELEGATION_DEPTH,
        allow_repeated_actors=idp_settings.ALLOW_REPEATED_ACTORS,
    )
    return ctx, rules, limits
