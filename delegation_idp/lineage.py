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

Disabling a party, deactivating a user or revoking a key does not go through a
parent: the new token may name a party that no existing token names. So the
issuing transaction also takes a shared lock on the rows of the parties, the
user and the signing key it relies on and re-checks them; the disabling
``UPDATE`` either waits for that transaction (and the revocation that follows
it finds the new token) or is seen by it (and the token is refused).
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from . import audit, signals
from .claims import Issued
from .conf import idp_settings
from .models import AuditEvent, OpaqueRedemption, Party, PolicyVersion, SigningKey, TokenLineage

logger = logging.getLogger(__name__)

__all__ = [
    "ChainRevoked",
    "ParentRevoked",
    "SweepResult",
    "acted_for_user",
    "code_digest",
    "record_issued",
    "revoke_code_redemption",
    "revoke_for_party",
    "revoke_for_user",
    "revoke_signed_by",
    "revoke_subtree",
    "sweep_expired",
    "tree",
]

# Rows per UPDATE/DELETE statement: keeps parameter lists far below every
# database's limit, whatever the size of a subtree.
CHUNK = 1000


class ParentRevoked(Exception):
    """The subject token of an exchange was revoked or expired meanwhile."""

    reason = "subject_revoked"


class ChainRevoked(ParentRevoked):
    """A party, the user or the signing key the new token relies on was disabled meanwhile."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- issuance ---------------------------------------------------------------------


def _is_active_field(user_model: Any) -> Any:
    """The concrete ``is_active`` field of the user model, wherever it is defined (a
    multi-table-inheritance parent keeps it in its own table), or None if it has none
    (``AbstractBaseUser`` makes every user active)."""
    try:
        field = user_model._meta.get_field("is_active")
    except FieldDoesNotExist:
        return None
    return field if getattr(field, "concrete", False) else None


def _subject_sql() -> tuple[str, list[str]]:
    """The statement behind :func:`subject_record`, and the user fields it reads."""
    return _subject_sql_for(connection.vendor, settings.AUTH_USER_MODEL)


@functools.lru_cache(maxsize=8)
def _subject_sql_for(vendor: str, user_model: str) -> tuple[str, list[str]]:
    quote = connection.ops.quote_name
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
    saves the exchange a round trip (:func:`delegation_idp.rules.current`). A
    raw statement over the models' own columns, because compiling the
    equivalent ``select_related`` query costs more than running it.
    """
    sql, user_fields = _subject_sql()
    rows = list(TokenLineage.objects.raw(sql, [jti]))
    if not rows:
        return None
    row = rows[0]
    active = row.subject_user_active  # type: ignore[attr-defined]
    if row.user_id is not None:
        User = get_user_model()
        values = [row.user_id, bool(active)][: len(user_fields)]
        row.user = User.from_db(row._state.db, user_fields, values)
    return row


def lock_parent(jti: str) -> TokenLineage:
    """Lock the subject token's row for the rest of the transaction and re-check it."""
    parent = TokenLineage.objects.select_for_update().filter(jti=jti).first()
    if parent is None or parent.revoked_at is not None or parent.expires_at <= timezone.now():
        raise ParentRevoked(jti)
    return parent


def _shared_rows(model: Any, column: str, values: list[Any], fields: list[str]) -> list[tuple[Any, ...]]:
    """``SELECT fields FROM model WHERE column IN values``, share-locked where the database can.

    ``FOR SHARE`` lets concurrent issuances proceed together while making any
    ``UPDATE`` of these rows wait for them (Django only offers ``FOR UPDATE``,
    which would serialise every exchange of the same agent).
    """
    if not values:
        return []
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
def _issuance_sql(vendor: str, user_model: str, parties: int, with_user: bool, with_parent: bool) -> str:
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
    quote = connection.ops.quote_name
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
    sql = _issuance_sql(
        connection.vendor, settings.AUTH_USER_MODEL, len(uris), active_field is not None, bool(parent_jti)
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

    Raises :class:`ChainRevoked` when a party, the user or the key was disabled
    meanwhile, and :class:`ParentRevoked` when the parent was revoked or expired.
    One statement on PostgreSQL and SQLite; one per table elsewhere.
    """
    uris = sorted(set(parties))
    if connection.vendor in ONE_STATEMENT_VENDORS:
        blocked, parent_live = _checked_in_one_statement(uris, user_pk, kid, parent_jti)
    else:
        blocked = issuance_blocked(uris, kid, user_pk)
        parent_live = True
        if not blocked and parent_jti:
            try:
                lock_parent(parent_jti)
            except ParentRevoked:
                parent_live = False
    if blocked == "key_revoked":
        from .keys import keyset

        keyset.invalidate()  # this process still signed with it: reload at once
    if blocked:
        raise ChainRevoked(blocked)
    if parent_jti and not parent_live:
        raise ParentRevoked(parent_jti)


def record_issued(request: Any, issued: Issued, access_token: Any, grant_type: str) -> TokenLineage:
    """Store the lineage row of a token just issued (inside the issuance transaction).

    An exchange whose parent, parties, user or key were revoked meanwhile raises
    :class:`ParentRevoked` (the grant answers with an error, nothing is issued).
    For the other grants django-oauth-toolkit answers anyway, so the token is
    recorded as revoked on issue and its ``AccessToken`` row deleted on commit.
    """
    claims = issued.claims
    exchange = getattr(request, "delegation", None)
    jti = claims["jti"]
    user = getattr(request, "user", None)
    user_pk = getattr(user, "pk", None)
    # Parties, user and key first, the parent row second: the same order in which
    # disabling takes its locks (UPDATE of the party, then the lineage rows), so
    # the two never deadlock.
    try:
        check_issuance(issued.parties, issued.kid, user_pk, exchange.parent_jti if exchange else "")
    except ChainRevoked as blocked:
        if exchange is not None:
            raise
        # Any other grant: refuse inside the issuance transaction, so nothing is stored
        # and django-oauth-toolkit answers with this error instead of a token.
        raise _refusal(blocked.reason) from None
    if exchange is not None:
        parent_jti, root_jti = exchange.parent_jti, exchange.root_jti
        path, depth = f"{exchange.parent_path}/{jti}", exchange.depth
    else:
        parent_jti, root_jti, path, depth = "", jti, jti, 0
    code = getattr(request, "code", None) if grant_type == "authorization_code" else None
    row = TokenLineage.objects.create(
        jti=jti,
        parent_jti=parent_jti,
        root_jti=root_jti,
        path=path,
        depth=depth,
        grant_type=grant_type,
        user=user if user_pk is not None else None,
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
        code_hash=code_digest(code) if code else None,
    )
    if exchange is not None:
        # The exchange's audit record commits (or rolls back) with its token.
        audit.write_issued("token_exchange", get_access_token_model())
    return row


def _refusal(reason: str) -> Exception:
    """The OAuth error for a grant whose client, user or key was disabled meanwhile."""
    from oauthlib.oauth2.rfc6749 import errors

    logger.warning("token refused at issuance: %s", reason)
    if reason == "party_disabled":
        return errors.UnauthorizedClientError(description="This client is disabled.")
    if reason == "user_inactive":
        return errors.InvalidGrantError(description="The user is not active.")
    unavailable = errors.TemporarilyUnavailableError(description="Signing keys are changing; retry.")
    unavailable.status_code = 503
    return unavailable


# -- revocation ---------------------------------------------------------------------

# Set while this module deletes AccessToken rows itself, so the post_delete
# receiver does not look each one up again.
_cascading: contextvars.ContextVar[bool] = contextvars.ContextVar("delegation_idp_cascading", default=False)


@contextmanager
def cascading() -> Iterator[None]:
    token = _cascading.set(True)
    try:
        yield
    finally:
        _cascading.reset(token)


def _delete_access_tokens(pks: list[Any]) -> None:
    AccessToken = get_access_token_model()
    with cascading():
        for chunk in _chunks(pks):
            AccessToken.objects.filter(pk__in=chunk).delete()


def _mark(queryset: QuerySet[TokenLineage], reason: str, now: datetime) -> list[str]:
    """Mark every unrevoked row of ``queryset`` and drop its ``AccessToken`` rows."""
    rows = list(queryset.filter(revoked_at__isnull=True).values_list("pk", "jti", "access_token_id"))
    if not rows:
        return []
    for chunk in _chunks([pk for pk, _, _ in rows]):
        TokenLineage.objects.filter(pk__in=chunk).update(
            revoked_at=now, revocation_reason=reason[:64], access_token=None
        )
    _delete_access_tokens([tid for _, _, tid in rows if tid is not None])
    return [jti for _, jti, _ in rows]


def _subtree_q(path: str) -> Q:
    return Q(path=path) | Q(path__startswith=path + "/")


def _after_commit(jtis: list[str], reason: str, top: TokenLineage | None) -> None:
    """Once the revocation commits: one audit event, then the ``token_revoked`` signal
    (its receivers publish to Redis). A failing receiver is logged, never raised:
    the revocation has already committed."""
    if not jtis:
        return

    def publish() -> None:
        if top is not None:
            write_revocation_event(top, reason, len(jtis))
        for receiver, result in signals.token_revoked.send_robust(
            sender=TokenLineage, jtis=jtis, reason=reason
        ):
            if isinstance(result, Exception):
                logger.error("token_revoked receiver %r failed: %r", receiver, result)

    transaction.on_commit(publish)


def write_revocation_event(top: TokenLineage, reason: str, count: int) -> None:
    """The audit record of one revocation: the token at the top of the revoked subtree."""
    try:
        idp_settings.AUDIT_WRITER(
            event="revocation",
            decision=AuditEvent.REVOKED,
            reason=reason[:64],
            error="",
            grant_type=top.grant_type,
            client_id=top.client_id,
            user_id=str(top.user_id or ""),
            subject=top.subject,
            chain=list(top.chain),
            requested_audience=[],
            requested_scope="",
            granted_audience=list(top.audience),
            granted_scope=top.scope,
            jti=top.jti,
            parent_jti=top.parent_jti,
            client_ip=None,
        )
    except Exception:
        logger.exception("audit record of a revocation could not be written (%d tokens)", count)


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
        _after_commit(revoked, reason, node)
    return revoked


def _revoke_roots(matching: QuerySet[TokenLineage], reason: str, now: datetime) -> int:
    """Revoke the subtrees of every live row in ``matching``."""
    total = 0
    paths = list(matching.filter(revoked_at__isnull=True).values_list("path", flat=True))
    # Subtrees of rows already inside another matched subtree are covered by it.
    paths.sort(key=len)
    roots: list[str] = []
    covered: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if any("/".join(parts[:i]) in covered for i in range(1, len(parts) + 1)):
            continue
        roots.append(path)
        covered.add(path)
    with transaction.atomic():
        for path in roots:
            subtree = TokenLineage.objects.filter(_subtree_q(path))
            list(subtree.select_for_update().values_list("pk", flat=True))
            revoked = _mark(subtree, reason, now)
            top = TokenLineage.objects.filter(path=path).first()
            _after_commit(revoked, reason, top)
            total += len(revoked)
    return total


def _revoke_refresh_tokens(queryset: QuerySet[Any]) -> int:
    """django-oauth-toolkit refresh tokens could mint new roots: revoke them too."""
    count = 0
    while True:
        batch = list(queryset.filter(revoked__isnull=True).order_by("pk")[:CHUNK])
        if not batch:
            return count
        for refresh in batch:
            refresh.revoke()  # django-oauth-toolkit's own method; also deletes its access token
        count += len(batch)


def code_digest(code: str) -> str:
    """What is stored of an authorization code: its SHA-256, never the code."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def revoke_code_redemption(code: str, reason: str = "code_replayed", now: datetime | None = None) -> int:
    """An authorization code was presented again (RFC 6749 sections 4.1.2 and 10.5): revoke
    every token its redemption issued, their subtrees, and the refresh tokens issued with
    them (with every refresh token rotated from those: django-oauth-toolkit's family).
    Returns the number of lineage rows revoked; 0 for a code never redeemed."""
    now = now or timezone.now()
    digest = code_digest(code)
    rows = list(TokenLineage.objects.filter(code_hash=digest).values_list("jti", "access_token_id"))
    opaque = list(OpaqueRedemption.objects.filter(code_hash=digest))
    revoked_opaque = _revoke_opaque_redemptions(opaque) if opaque else 0
    if not rows:
        return revoked_opaque
    RefreshToken = get_refresh_token_model()
    with transaction.atomic():
        # The refresh tokens first: revoking the subtree deletes the access tokens they
        # point at, which would lose the link.
        families = list(
            RefreshToken.objects.filter(
                access_token_id__in=[a for _, a in rows if a is not None]
            ).values_list("pk", "token_family")
        )
        total = 0
        for jti, _access_token_id in rows:
            total += len(revoke_subtree(jti, reason, now))
        for pk, family in families:
            if family:
                RefreshToken.revoke_family(family)
            else:
                RefreshToken.objects.get(pk=pk).revoke()
    logger.warning("authorization code replayed: %d tokens revoked", total)
    return total


def record_opaque_redemption(code: str, access_token: Any, refresh_token: Any) -> None:
    """Remember, by the code's hash, the opaque tokens an authorization code was redeemed for."""
    OpaqueRedemption.objects.create(
        code_hash=code_digest(code),
        access_token=access_token,
        token_family=getattr(refresh_token, "token_family", None),
        expires_at=access_token.expires,
    )


def _revoke_opaque_redemptions(redemptions: list[OpaqueRedemption]) -> int:
    """django-oauth-toolkit's own revocation of each redemption's access token and its
    refresh-token family (every token rotated from it included)."""
    RefreshToken = get_refresh_token_model()
    AccessToken = get_access_token_model()
    with transaction.atomic():
        for redemption in redemptions:
            RefreshToken.revoke_family(redemption.token_family)  # a no-op without a family
            AccessToken.objects.filter(pk=redemption.access_token_id).delete()
    logger.warning("authorization code replayed: opaque tokens of %d redemption(s) revoked", len(redemptions))
    return len(redemptions)


def revoke_for_party(uri: str, reason: str = "party_disabled", now: datetime | None = None) -> int:
    """Every live token in which ``uri`` is the client, an audience or any actor."""
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(parties__contains=f"|{uri}|", expires_at__gt=now)
    total = _revoke_roots(matching, reason, now)
    application_id = Party.objects.filter(uri=uri).values_list("application_id", flat=True).first()
    if application_id is not None:
        _revoke_refresh_tokens(get_refresh_token_model().objects.filter(application_id=application_id))
    return total


def revoke_for_user(user_pk: Any, reason: str = "user_deactivated", now: datetime | None = None) -> int:
    """Every live token of the user, and their refresh tokens."""
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(user_id=user_pk, expires_at__gt=now)
    total = _revoke_roots(matching, reason, now)
    _revoke_refresh_tokens(get_refresh_token_model().objects.filter(user_id=user_pk))
    return total


def revoke_signed_by(kid: str, reason: str = "key_revoked", now: datetime | None = None) -> int:
    """Every live token signed by ``kid``, with their subtrees."""
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(kid=kid, expires_at__gt=now)
    return _revoke_roots(matching, reason, now)


def revoke_access_token_row(access_token_pk: Any, reason: str = "revoked") -> list[str]:
    """Called when django-oauth-toolkit deletes an ``AccessToken`` (RFC 7009 revocation,
    ``AccessToken.revoke()``); expired rows deleted by ``cleartokens`` are left alone."""
    if _cascading.get():
        return []
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


# -- reading ------------------------------------------------------------------------


def subtree(jti: str) -> Iterable[TokenLineage]:
    node = TokenLineage.objects.filter(jti=jti).first()
    if node is None:
        return []
    return TokenLineage.objects.filter(_subtree_q(node.path)).order_by("depth", "issued_at")


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
    from .actchain import chain_from_act

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


# -- sweeps --------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    access_tokens: int = 0
    lineage: int = 0
    audit: int = 0


def _delete_in_batches(queryset: QuerySet[Any], batch_size: int, *, cascade_off: bool = False) -> int:
    """Delete ``queryset`` one batch of primary keys at a time, each batch its own transaction."""
    model = queryset.model
    deleted = 0
    while True:
        pks = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted
        with transaction.atomic():
            if model is get_access_token_model():
                # Unlink lineage first: its FK has no database constraint.
                TokenLineage.objects.filter(access_token_id__in=pks).update(access_token=None)
            if cascade_off:
                with cascading():
                    model.objects.filter(pk__in=pks).delete()
            else:
                model.objects.filter(pk__in=pks).delete()
        deleted += len(pks)


def sweep_expired(now: datetime | None = None, batch_size: int | None = None) -> SweepResult:
    """Delete expired tokens and records past retention, in bounded batches.

    * django-oauth-toolkit ``AccessToken`` rows expired (plus clock skew) that no
      refresh token points to; their lineage records stay;
    * lineage records (and the code redemptions of opaque tokens) expired more than
      ``LINEAGE_RETENTION_SECONDS`` ago;
    * audit events older than ``AUDIT_RETENTION_SECONDS`` (if set).
    """
    now = now or timezone.now()
    size = int(batch_size or idp_settings.SWEEP_BATCH_SIZE)
    AccessToken = get_access_token_model()
    RefreshToken = get_refresh_token_model()
    skew = timedelta(seconds=idp_settings.CLOCK_SKEW_SECONDS)
    expired_tokens = AccessToken.objects.filter(expires__lt=now - skew).exclude(
        pk__in=RefreshToken.objects.filter(access_token__isnull=False).values("access_token_id")
    )
    tokens = _delete_in_batches(expired_tokens, size, cascade_off=True)
    retention = timedelta(seconds=idp_settings.LINEAGE_RETENTION_SECONDS)
    lineage = _delete_in_batches(TokenLineage.objects.filter(expires_at__lt=now - retention), size)
    lineage += _delete_in_batches(OpaqueRedemption.objects.filter(expires_at__lt=now - retention), size)
    audit = 0
    if idp_settings.AUDIT_RETENTION_SECONDS is not None:
        cutoff = now - timedelta(seconds=idp_settings.AUDIT_RETENTION_SECONDS)
        audit = _delete_in_batches(AuditEvent.objects.filter(created__lt=cutoff), size)
    if tokens or lineage or audit:
        logger.info("swept %d access tokens, %d lineage records, %d audit events", tokens, lineage, audit)
    return SweepResult(access_tokens=tokens, lineage=lineage, audit=audit)
