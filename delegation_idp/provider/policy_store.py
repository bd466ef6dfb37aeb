"""Delegation policy as stored: the database rows one decision needs, as policy views.

The token-exchange grant and the admin's "try a delegation" page both go
through :func:`load`, so the page shows exactly what the token endpoint would
answer.

Each process keeps the parties and rules it has read, keyed by the policy
version row (:class:`~delegation_idp.models.PolicyVersion`). Every request
reads that one row first; database triggers give it a new random value in the
same transaction as any write to the policy tables (ORM, bulk ``update()``,
raw SQL, another process), so a rule or party edited anywhere governs the very
next request in every process. Where the triggers are absent (a database other
than SQLite or PostgreSQL, or a table rebuilt without them) or
``POLICY_CACHE`` is off, every request reads the policy afresh instead. Each look-up is
counted (with metrics on) as answered from the snapshot, read into it, or read without one
(``delegation_idp_policy_cache_lookups_total``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.utils import timezone

from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.models import DelegationRule, Party, PolicyVersion, approval_view
from delegation_idp.provider import metrics, self_registered
from delegation_idp.provider import policy_triggers as triggers

__all__ = ["PolicyStore", "current", "load", "rules_for"]

logger = logging.getLogger(__name__)

# A process holds at most this many parties and actors' rule lists per version
# (requests may name parties that do not exist; those are cached as absent too,
# unless longer than any party URI can be).
MAX_ENTRIES = 4096
# How often a process checks again that the version triggers are in place (seconds).
TRIGGER_RECHECK_SECONDS = 60.0


def _links(descriptor: Any, party_pk: Any, target: str, alias: str | None) -> dict[int, set[Any]]:
    """``{rule id: {target values}}`` for one many-to-many field of the rules of
    ``party``, read from the link table only (no full user, group or party rows)."""
    field = descriptor.field
    source, other = field.m2m_field_name(), field.m2m_reverse_field_name()
    rows = (
        descriptor.through.objects.using(alias)
        .filter(**{f"{source}__actor_id": party_pk})
        .values_list(f"{source}_id", f"{other}{target}")
    )
    links: dict[int, set[Any]] = {}
    for rule_id, value in rows:
        links.setdefault(rule_id, set()).add(value)
    return links


def _read_rules(party: Party, alias: str | None = None) -> tuple[policy.RuleView, ...]:
    if party.self_registered:
        # Governed by the registration rules that match it, and by nothing broader.
        return self_registered.rules_for(party, alias)
    rows = list(
        DelegationRule.objects.using(alias)
        .filter(actor_id=party.pk)
        .values_list(
            "pk",
            "max_scope",
            "max_depth",
            "allow_direct_from_user",
            "valid_from",
            "valid_until",
            "enabled",
            "position",
            "approval",
            "approval_scopes",
            "approval_min_depth",
            "approval_lifetime",
            "approval_reuse_seconds",
        )
    )
    if not rows:
        return ()
    audiences = _links(DelegationRule.audiences, party.pk, "__uri", alias)
    upstream = _links(DelegationRule.upstream_actors, party.pk, "__uri", alias)
    users = _links(DelegationRule.users, party.pk, "_id", alias)
    groups = _links(DelegationRule.groups, party.pk, "_id", alias)
    return tuple(
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
            position=position,
            approval=approval_view(mode, scopes, min_depth, lifetime, reuse),
        )
        for (
            pk,
            max_scope,
            max_depth,
            direct,
            valid_from,
            valid_until,
            enabled,
            position,
            mode,
            scopes,
            min_depth,
            lifetime,
            reuse,
        ) in rows
    )


class _Snapshot:
    """What one process has read of one policy version. Entries are only added,
    never changed; a new version gets a new, empty snapshot."""

    def __init__(self, version: str, alias: str) -> None:
        self.version = version
        self.alias = alias
        self.rules: dict[tuple[Any, str], tuple[policy.RuleView, ...]] = {}
        self.parties: dict[str, policy.PartyView | None] = {}
        self.owners: tuple[tuple[str, tuple[str, ...]], ...] | None = None
        self.client_audiences: dict[Any, tuple[tuple[str, tuple[str, ...]], ...]] = {}


class PolicyStore:
    """The stored policy as one request sees it.

    Obtain one per request with :func:`current`: it reads the version row once,
    and answers from this process's snapshot of that version where it can.
    """

    def __init__(self, snapshot: _Snapshot | None = None) -> None:
        self._snapshot = snapshot
        # Every read of a cached store goes to the database its version came from: with
        # read replicas, rows from a replica that lags behind the version never get filed
        # under it (a replica applies commits in order).
        self._alias = snapshot.alias if snapshot is not None else None

    @property
    def cached(self) -> bool:
        return self._snapshot is not None

    def rules_for(self, party: Party) -> tuple[policy.RuleView, ...]:
        """Every rule of ``party`` as an actor, enabled or not (the evaluator checks
        ``enabled`` itself, so a disabled rule is reported as not in effect)."""
        snap = self._snapshot
        if snap is None:
            metrics.observe_policy_lookup(None)
            return _read_rules(party)
        key = (party.pk, party.uri)
        found = snap.rules.get(key)
        metrics.observe_policy_lookup(found is not None)
        if found is None:
            found = _read_rules(party, snap.alias)
            if len(snap.rules) < MAX_ENTRIES:
                snap.rules[key] = found
        return found

    def parties(self, uris: Iterable[str]) -> dict[str, policy.PartyView]:
        """The registered parties among ``uris``, by URI (unknown ones left out)."""
        longest = Party._meta.get_field("uri").max_length or 255
        wanted = {uri for uri in uris if len(uri) <= longest}  # longer ones name no party
        snap = self._snapshot
        if snap is None:
            metrics.observe_policy_lookup(None)
            return {p.uri: p.as_view() for p in Party.objects.filter(uri__in=wanted)}
        missing = wanted - snap.parties.keys()
        metrics.observe_policy_lookup(not missing)
        if missing:
            found = {p.uri: p.as_view() for p in Party.objects.using(snap.alias).filter(uri__in=missing)}
            for uri in missing:
                if len(snap.parties) < MAX_ENTRIES:
                    snap.parties[uri] = found.get(uri)
            known = {uri: snap.parties.get(uri, found.get(uri)) for uri in wanted}
        else:
            known = {uri: snap.parties[uri] for uri in wanted}
        return {uri: view for uri, view in known.items() if view is not None}

    def resource_owners(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(uri, resource prefixes)`` of every enabled party, for RFC 8707 resource look-ups."""
        snap = self._snapshot
        metrics.observe_policy_lookup(None if snap is None else snap.owners is not None)
        if snap is not None and snap.owners is not None:
            return snap.owners
        enabled = Party.objects.using(self._alias).filter(enabled=True).only("uri", "resource_prefixes")
        owners = tuple((p.uri, tuple(p.prefixes())) for p in enabled)
        if snap is not None:
            snap.owners = owners
        return owners

    def client_audiences(self, application_pk: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(uri, resource prefixes)`` of every enabled party on the audience allow-list
        of the application ``application_pk`` (``Party.clients``), for RFC 8707 look-ups."""
        snap = self._snapshot
        metrics.observe_policy_lookup(None if snap is None else application_pk in snap.client_audiences)
        if snap is not None and application_pk in snap.client_audiences:
            return snap.client_audiences[application_pk]
        rows = (
            Party.objects.using(self._alias)
            .filter(enabled=True, clients__pk=application_pk)
            .only("uri", "resource_prefixes")
        )
        found = tuple((p.uri, tuple(p.prefixes())) for p in rows)
        if snap is not None and len(snap.client_audiences) < MAX_ENTRIES:
            snap.client_audiences[application_pk] = found
        return found


_lock = threading.Lock()
_snapshots: dict[str, _Snapshot] = {}
_tracked: dict[str, tuple[bool, float]] = {}


def _tracked_on(alias: str) -> bool:
    """Whether the version triggers are in place and enabled on ``alias``, checked
    again every ``TRIGGER_RECHECK_SECONDS`` (a migration that rebuilds a table on
    SQLite, or ``ALTER TABLE ... DISABLE TRIGGER``, removes them from under a
    running process)."""
    now = time.monotonic()
    tracked, checked = _tracked.get(alias, (False, -TRIGGER_RECHECK_SECONDS - 1.0))
    if now - checked > TRIGGER_RECHECK_SECONDS:
        connection = connections[alias]
        tracked = triggers.installed(connection)
        with _lock:
            _tracked[alias] = (tracked, now)
            if not tracked:
                _snapshots.pop(alias, None)
        if not tracked and connection.vendor in triggers.VENDORS:
            logger.warning(
                "delegation_idp: the policy version triggers are missing on database %r; "
                "the policy is read afresh on every request (see delegation_idp.W003)",
                alias,
            )
    return tracked


def _read_version(alias: str) -> str | None:
    connection = connections[alias]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('version')} FROM {quote(PolicyVersion._meta.db_table)} "  # noqa: S608 - model metadata
            f"WHERE {quote('id')} = 1"
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def current(known: tuple[str, str | None] | None = None) -> PolicyStore:
    """A store for one request: cached by policy version where that is safe.

    ``known`` is ``(database alias, version)`` when the caller already read the
    version row (the exchange reads it with the subject token's lineage row);
    otherwise it is read here.
    """
    if not idp_settings.POLICY_CACHE:
        return PolicyStore()
    alias = router.db_for_read(DelegationRule)
    if not _tracked_on(alias):
        return PolicyStore()
    version = known[1] if known is not None and known[0] == alias else _read_version(alias)
    if version is None:
        return PolicyStore()
    snap = _snapshots.get(alias)
    if snap is None or snap.version != version:
        snap = _Snapshot(version, alias)
        with _lock:
            _snapshots[alias] = snap
    return PolicyStore(snap)


def forget() -> None:
    """Drop every snapshot and re-check the triggers on next use (tests, after schema changes)."""
    with _lock:
        _snapshots.clear()
        _tracked.clear()


def rules_for(party: Party) -> list[policy.RuleView]:
    """Every rule of ``party`` as an actor, read afresh from the database."""
    return list(_read_rules(party))


def load(
    party: Party,
    chain: tuple[str, ...],
    targets: Iterable[str],
    *,
    subject_scope: frozenset[str],
    requested_scope: frozenset[str] | None,
    user: Any = None,
    from_user: bool | None = None,
    may_act: Any = None,
    now: datetime | None = None,
    store: PolicyStore | None = None,
    user_authorized: bool = False,
) -> tuple[policy.ExchangeContext, list[policy.RuleView], policy.Limits]:
    """The evaluator's three inputs for ``party`` acting on a token with ``chain``.

    ``from_user`` says whether the subject token's lineage row has a user (only then can
    a rule "directly from a user token" match); by default, whether ``user`` is given.
    """
    store = store or current()
    targets = tuple(targets)
    parties = store.parties({party.uri, *chain, *targets})
    rules = list(store.rules_for(party))
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
        from_user=(user is not None) if from_user is None else from_user,
        group_ids=group_ids,
        may_act=may_act,
        issuer=idp_settings.ISSUER,
        user_authorized=user_authorized,
    )
    limits = policy.Limits(
        max_depth=idp_settings.MAX_DELEGATION_DEPTH,
        allow_repeated_actors=idp_settings.ALLOW_REPEATED_ACTORS,
    )
    return ctx, rules, limits
