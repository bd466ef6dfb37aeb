"""Issuance: the lineage row of every token issued, and the re-check that makes it race-free.

Race with a revocation: the exchange locks its parent's row (``SELECT ... FOR
UPDATE``) and re-checks it inside the transaction that stores the child. A
revocation first locks the subtree, which waits for any exchange holding a
lock in it, then marks the subtree in a new statement that sees the children
those exchanges committed. So no token escapes a committed revocation.

Disabling a party, deactivating a user or revoking a key does not go through a
parent: the new token may name a party that no existing token names. So the
issuing transaction also takes a shared lock on the rows of the parties, the
user and the signing key it relies on and re-checks them; the disabling
``UPDATE`` either waits for that transaction (and the revocation that follows
it finds the new token) or is seen by it (and the token is refused).

Every vendor-specific statement of lineage lives in this module, built once per
shape from the models' own metadata: the one-statement subject look-up, the
one-statement re-check (row locks in sub-selects on PostgreSQL) and the
``FOR SHARE`` fallback for other databases.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, router
from django.utils import timezone

from delegation_idp import sql
from delegation_idp.conf import idp_settings
from delegation_idp.core.types import Issuance
from delegation_idp.models import OpaqueRedemption, Party, PolicyVersion, SigningKey, TokenLineage

logger = logging.getLogger(__name__)


CHUNK = 1000


class IssuanceBlocked(Exception):
    """Found inside the issuing transaction: something the new token relies on changed
    after the request was decided. ``what`` is ``"parent"`` (the subject token was revoked
    or expired), ``"party"`` (a party it names was disabled), ``"user"`` (its user was
    deactivated) or ``"key"`` (its signing key was revoked). Callers answer with the
    reason their grant gives it (:mod:`delegation_idp.core.reasons`)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_active_field(user_model: Any) -> Any:
    """The concrete ``is_active`` field of the user model, wherever it is defined (a
    multi-table-inheritance parent keeps it in its own table), or None if it has none
    (``AbstractBaseUser`` makes every user active)."""
    try:
        field = user_model._meta.get_field("is_active")
    except FieldDoesNotExist:
        return None
    return field if getattr(field, "concrete", False) else None


def _reader() -> Any:
    """The connection lineage is read from (the router's choice for ``TokenLineage``)."""
    return connections[router.db_for_read(TokenLineage)]


def _writer() -> Any:
    """The connection lineage is written and re-checked on: the issuing transaction's."""
    return connections[router.db_for_write(TokenLineage)]


def _subject_sql(connection: Any) -> tuple[str, list[str]]:
    """The statement behind :func:`subject_record`, and the user fields it reads."""
    return _subject_sql_for(connection.alias, connection.vendor, settings.AUTH_USER_MODEL)


@functools.lru_cache(maxsize=8)
def _subject_sql_for(alias: str, vendor: str, user_model: str) -> tuple[str, list[str]]:
    quote = connections[alias].ops.quote_name
    User = get_user_model()
    meta, user_meta = TokenLineage._meta, User._meta
    columns = ", ".join(f"l.{quote(str(f.column))}" for f in meta.concrete_fields)
    user_fields = [user_meta.pk.attname]
    active, holder = "1", user_meta
    active_field = _is_active_field(User)
    if active_field is not None:
        holder = active_field.model._meta  # the table that holds the column
        active = f"u.{quote(str(active_field.column))}"
        user_fields.append("is_active")
    user_fk = meta.get_field("user")
    version = (
        f"(SELECT {quote('version')} FROM {quote(PolicyVersion._meta.db_table)} "  # noqa: S608
        f"WHERE {quote('id')} = 1)"
    )
    sql = (
        f"SELECT {columns}, {active} AS subject_user_active, "  # noqa: S608 - identifiers from model metadata
        f"{version} AS policy_version "
        f"FROM {quote(meta.db_table)} l LEFT JOIN {quote(holder.db_table)} u "
        f"ON u.{quote(str(holder.pk.column))} = l.{quote(str(user_fk.column))} "
        f"WHERE l.{quote(str(meta.get_field('jti').column))} = %s"
    )
    return sql, user_fields


def subject_record(jti: str) -> TokenLineage | None:
    """The lineage row of ``jti`` with its user, in one statement.

    The user comes back as a model instance with only its primary key and
    ``is_active`` loaded (any other field loads on first access, as with
    ``QuerySet.only()``): all an exchange needs. The row also carries
    ``policy_version``, the policy version row read by the same statement, which
    saves the exchange a round trip (:func:`delegation_idp.provider.policy_store.current`). A
    raw statement over the models' own columns, because compiling the
    equivalent ``select_related`` query costs more than running it.
    """
    connection = _reader()
    statement, user_fields = _subject_sql(connection)
    alias = connection.alias
    with connection.cursor() as cursor:
        cursor.execute(statement, [jti])
        found = cursor.fetchone()
    if found is None:
        return None
    names, readers = sql.readers(TokenLineage, alias)
    count = len(names)
    row = TokenLineage.from_db(alias, names, sql.convert(connection, readers, found[:count]))
    active, version = found[count], found[count + 1]
    row.policy_version = version  # type: ignore[attr-defined]
    if row.user_id is not None:
        User = get_user_model()
        values = [row.user_id, bool(active)][: len(user_fields)]
        row.user = User.from_db(alias, user_fields, values)
    return row


def lock_parent(jti: str) -> TokenLineage:
    """Lock the subject token's row for the rest of the transaction and re-check it."""
    parent = TokenLineage.objects.select_for_update().filter(jti=jti).first()
    if parent is None or parent.revoked_at is not None or parent.expires_at <= timezone.now():
        raise IssuanceBlocked("parent")
    return parent


def _shared_rows(model: Any, column: str, values: list[Any], fields: list[str]) -> list[tuple[Any, ...]]:
    """``SELECT fields FROM model WHERE column IN values``, share-locked where the database can.

    ``FOR SHARE`` lets concurrent issuances proceed together while making any
    ``UPDATE`` of these rows wait for them (Django only offers ``FOR UPDATE``,
    which would serialise every exchange of the same agent).
    """
    if not values:
        return []
    connection = _writer()
    if connection.vendor not in ("postgresql", "mysql"):
        # SQLite serialises writers; other backends fall back to an exclusive lock.
        queryset = model._default_manager.filter(**{f"{column}__in": values})
        if connection.features.has_select_for_update:
            queryset = queryset.select_for_update()
        return list(queryset.values_list(*fields))
    quote = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(quote(meta.get_field(f).column) for f in fields)
    key = meta.pk if column == "pk" else meta.get_field(column)  # "pk" is an alias, not a field
    placeholders = ", ".join(["%s"] * len(values))
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608 - identifiers from model metadata
        f"WHERE {quote(key.column)} IN ({placeholders}) FOR SHARE"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key.get_db_prep_value(value, connection) for value in values])
        return list(cursor.fetchall())


def issuance_blocked(parties: Iterable[str], kid: str, user_pk: Any) -> str:
    """Why a token naming these parties, for this user, signed by ``kid`` must not be
    issued now ('' if it may). Takes shared locks held until the transaction ends."""
    uris = sorted(set(parties))
    for _uri, enabled in _shared_rows(Party, "uri", uris, ["uri", "enabled"]):
        if not enabled:
            return "party_disabled"
    active_field = _is_active_field(get_user_model()) if user_pk is not None else None
    if active_field is not None:
        rows = _shared_rows(active_field.model, "pk", [user_pk], ["is_active"])
        if not rows or not rows[0][0]:
            return "user_inactive"
    rows = _shared_rows(SigningKey, "kid", [kid], ["state"])
    if rows and rows[0][0] == SigningKey.REVOKED:
        return "key_revoked"
    return ""


# The databases on which the issuance checks run as one statement: row locks taken
# in sub-selects (PostgreSQL), or none needed because writers are serialised (SQLite).
ONE_STATEMENT_VENDORS = frozenset({"postgresql", "sqlite"})


@functools.lru_cache(maxsize=64)
def _issuance_sql(
    alias: str, vendor: str, user_model: str, parties: int, with_user: bool, with_parent: bool
) -> str:
    """One ``UNION ALL`` over the rows an issuance relies on, each share-locked on
    PostgreSQL (the parent's row locked for update), in the order disabling and
    revocation lock them: parties, user, key, then the parent. Built once per shape.

    Rows come back as ``(what, text, flag)``: ``("party", uri, enabled)``,
    ``("user", "", is_active)``, ``("key", state, None)`` and ``("parent", "", live)``
    where ``live`` means not revoked and not expired. Parameters, in order: the party
    URIs, the user's key, the kid, then the time and the parent's jti.

    On PostgreSQL the first branch sets ``lock_timeout`` for the rest of the issuing
    transaction (``set_config(..., true)`` is ``SET LOCAL``), in the same statement so
    issuance keeps its query count: the branches of a ``UNION ALL`` run in order, and a
    locking query never runs in parallel, so the timeout is in force before any lock is
    waited for. Its first parameter is then the timeout in milliseconds.
    """
    quote = connections[alias].ops.quote_name
    postgres = vendor == "postgresql"

    def locked(sql: str, mode: str = "SHARE") -> str:
        return f"{sql} FOR {mode}" if postgres else sql

    def col(model: Any, name: str) -> str:
        return str(quote(model._meta.get_field(name).column))

    def table(model: Any) -> str:
        return str(quote(model._meta.db_table))

    branches: list[str] = []
    if postgres:
        branches.append("SELECT 'lock_timeout', set_config('lock_timeout', %s, true), CAST(NULL AS boolean)")
    if parties:
        placeholders = ", ".join(["%s"] * parties)
        inner = locked(
            f"SELECT {col(Party, 'uri')} AS v, {col(Party, 'enabled')} AS f FROM {table(Party)} "  # noqa: S608
            f"WHERE {col(Party, 'uri')} IN ({placeholders}) ORDER BY {col(Party, 'uri')}"
        )
        branches.append(f"SELECT 'party', s.v, s.f FROM ({inner}) s")  # noqa: S608 - identifiers from model metadata
    if with_user:
        active_field = _is_active_field(get_user_model())
        holder = active_field.model  # with multi-table inheritance, the parent that has the column
        inner = locked(
            f"SELECT {quote(str(active_field.column))} AS f FROM {table(holder)} "  # noqa: S608
            f"WHERE {quote(str(holder._meta.pk.column))} = %s"
        )
        branches.append(f"SELECT 'user', '', s.f FROM ({inner}) s")  # noqa: S608 - identifiers from model metadata
    inner = locked(
        f"SELECT {col(SigningKey, 'state')} AS v FROM {table(SigningKey)} "  # noqa: S608
        f"WHERE {col(SigningKey, 'kid')} = %s"
    )
    null_flag = "CAST(NULL AS boolean)" if postgres else "NULL"
    branches.append(f"SELECT 'key', s.v, {null_flag} FROM ({inner}) s")  # noqa: S608 - identifiers from model metadata
    if with_parent:
        revoked, expires = col(TokenLineage, "revoked_at"), col(TokenLineage, "expires_at")
        inner = locked(
            f"SELECT ({revoked} IS NULL AND {expires} > %s) AS f FROM {table(TokenLineage)} "  # noqa: S608
            f"WHERE {col(TokenLineage, 'jti')} = %s",
            "UPDATE",
        )
        branches.append(f"SELECT 'parent', '', s.f FROM ({inner}) s")  # noqa: S608 - identifiers from model metadata
    return " UNION ALL ".join(branches)


def _checked_in_one_statement(uris: list[str], user_pk: Any, kid: str, parent_jti: str) -> tuple[str, bool]:
    """``(why blocked or '', parent live)`` from one statement."""
    active_field = _is_active_field(get_user_model()) if user_pk is not None else None
    connection = _writer()
    sql = _issuance_sql(
        connection.alias,
        connection.vendor,
        settings.AUTH_USER_MODEL,
        len(uris),
        active_field is not None,
        bool(parent_jti),
    )
    params: list[Any] = []
    if connection.vendor == "postgresql":
        params.append(f"{max(1, int(float(idp_settings.ISSUANCE_LOCK_TIMEOUT) * 1000))}ms")
    params += uris
    if active_field is not None:
        params.append(active_field.model._meta.pk.get_db_prep_value(user_pk, connection))  # e.g. a UUID key
    params.append(kid)
    if parent_jti:
        params += [connection.ops.adapt_datetimefield_value(timezone.now()), parent_jti]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    disabled = any(what == "party" and not flag for what, _value, flag in rows)
    # A user model without is_active makes every user active (AbstractBaseUser).
    active = active_field is None or any(what == "user" and flag for what, _value, flag in rows)
    key_revoked = any(what == "key" and value == SigningKey.REVOKED for what, value, _flag in rows)
    live = any(what == "parent" and flag for what, _value, flag in rows)
    if disabled:
        return "party_disabled", live
    if not active:
        return "user_inactive", live
    return ("key_revoked" if key_revoked else ""), live


def check_issuance(parties: Iterable[str], kid: str, user_pk: Any, parent_jti: str = "") -> None:
    """Lock and re-check, inside the issuing transaction, everything the new token
    relies on: its parties, its user, its signing key and (for an exchange) its parent.

    Raises :class:`IssuanceBlocked` when a party, the user or the key was disabled
    meanwhile, or the parent was revoked or expired.
    One statement on PostgreSQL and SQLite; one per table elsewhere.
    """
    uris = sorted(set(parties))
    if _writer().vendor in ONE_STATEMENT_VENDORS:
        blocked, parent_live = _checked_in_one_statement(uris, user_pk, kid, parent_jti)
    else:
        blocked = issuance_blocked(uris, kid, user_pk)
        parent_live = True
        if not blocked and parent_jti:
            try:
                lock_parent(parent_jti)
            except IssuanceBlocked:
                parent_live = False
    if blocked:
        raise IssuanceBlocked(BLOCKED[blocked])
    if parent_jti and not parent_live:
        raise IssuanceBlocked("parent")


# What issuance_blocked() and the one-statement check report, as IssuanceBlocked.what.
BLOCKED = {"party_disabled": "party", "user_inactive": "user", "key_revoked": "key"}


def record_issued(issuance: Issuance, *, access_token: Any = None) -> None:
    """Re-check, then store the lineage row of a token being issued, inside its issuing
    transaction (the caller's). Raises :class:`IssuanceBlocked` when something the token
    relies on changed meanwhile: the transaction must then roll back.

    Parties, user and key are checked first, the parent row second: the same order in
    which disabling takes its locks (UPDATE of the party, then the lineage rows), so the
    two never deadlock.
    """
    claims = issuance.claims
    check_issuance(issuance.parties, issuance.kid, issuance.user_pk, issuance.parent_jti)
    sql.insert(
        TokenLineage,
        {
            "jti": issuance.jti,
            "parent_jti": issuance.parent_jti,
            "root_jti": issuance.root_jti or issuance.jti,
            "path": issuance.path,
            "depth": issuance.depth,
            "grant_type": issuance.grant_type,
            "user_id": issuance.user_pk,
            "subject": claims["sub"],
            "client_id": claims["client_id"],
            "audience": issuance.audience,
            "scope": claims.get("scope", ""),
            "act": claims.get("act"),
            "parties": "|" + "|".join(dict.fromkeys(issuance.parties)) + "|" if issuance.parties else "",
            "kid": issuance.kid,
            "issued_at": _ts(claims["iat"]),
            "expires_at": _ts(claims["exp"]),
            "access_token_id": getattr(access_token, "pk", None),
            "code_hash": code_digest(issuance.code) if issuance.code else None,
            "jkt": issuance.jkt,
            "status_list_id": issuance.status_entry[0] if issuance.status_entry else None,
            "status_idx": issuance.status_entry[1] if issuance.status_entry else None,
            "approval_id": issuance.approval_id,
        },
        using=router.db_for_write(TokenLineage),
    )


def code_digest(code: str) -> str:
    """What is stored of an authorization code: its SHA-256, never the code."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def record_opaque_redemption(code: str, access_token: Any, refresh_token: Any) -> None:
    """Remember, by the code's hash, the opaque tokens an authorization code was redeemed for."""
    OpaqueRedemption.objects.create(
        code_hash=code_digest(code),
        access_token=access_token,
        token_family=getattr(refresh_token, "token_family", None),
        expires_at=access_token.expires,
    )
