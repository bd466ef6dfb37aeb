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


def _links(descriptor: Any, party: Party, target: str) -> dict[int, set[Any]]:
    """``{rule id: {target values}}`` for one many-to-many field of the rules of
    ``party``, read from the link table only (no full user, group or party rows)."""
    field = descriptor.field
    source, other = field.m2m_field_name(), field.m2m_reverse_field_name()
    rows = descriptor.through.objects.filter(**{f"{source}__actor": party}).values_list(
        f"{source}_id", f"{other}{target}"
    )
    links: dict[int, set[Any]] = {}
    for rule_id, value in rows:
        links.setdefault(rule_id, set()).add(value)
    return links


def rules_for(party: Party) -> list[policy.RuleView]:
    """Every rule of ``party`` as an actor, enabled or not (the evaluator checks
    ``enabled`` itself, so a disabled rule is reported as not in effect)."""
    rows = list(
        DelegationRule.objects.filter(actor=party).values_list(
            "pk", "max_scope", "max_depth", "allow_direct_from_user", "valid_from", "valid_until", "enabled"
        )
    )
    if not rows:
        return []
    audiences = _links(DelegationRule.audiences, party, "__uri")
    upstream = _links(DelegationRule.upstream_actors, party, "__uri")
    users = _links(DelegationRule.users, party, "_id")
    groups = _links(DelegationRule.groups, party, "_id")
    return [
        policy.RuleView(
            id=pk,
            actor=party.uri,
            audiences=frozenset(audiences.get(pk, ())),
            max_scope=policy.scope_set(max_scope),
            max_depth=max_depth,
            upstream=frozenset(upstream.get(pk, ())),
            direct_from_user=direct,
            user_ids=frozenset(users.get(pk, ())),
            group_ids=frozenset(groups.get(pk, ())),
            valid_from=valid_from,
            valid_until=valid_until,
            enabled=enabled,
        )
        for pk, max_scope, max_depth, direct, valid_from, valid_until, enabled in rows
    ]


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
