"""Revocation that cascades: a token and its whole subtree, never its ancestors or siblings.

A revocation marks the lineage rows of a token and of its whole subtree and
deletes their django-oauth-toolkit ``AccessToken`` rows (where they have one), so
both this app's checks and django-oauth-toolkit's own resource protection refuse
them at once. Each revocation writes one audit record and, once committed, sends
``token_revoked`` (whose receiver publishes the ``jti`` values to Redis).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from delegation_idp import signals
from delegation_idp.conf import idp_settings
from delegation_idp.lineage.issuance import CHUNK, chunks, code_digest
from delegation_idp.models import AuditEvent, OpaqueRedemption, Party, StatusList, TokenLineage

logger = logging.getLogger(__name__)


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
        for chunk in chunks(pks):
            AccessToken.objects.filter(pk__in=chunk).delete()


def mark_status_lists(numbers: set[int]) -> None:
    """The lists holding newly revoked tokens changed (draft-ietf-oauth-status-list): their
    ``version`` moves past the signed one, in the revoking transaction, so the publication
    (:func:`delegation_idp.provider.status_lists.publish_status_lists`) signs them again even
    if the process dies right after the commit."""
    if numbers:
        StatusList.objects.filter(pk__in=sorted(numbers)).update(version=F("version") + 1)


def _mark(queryset: QuerySet[TokenLineage], reason: str, now: datetime) -> list[str]:
    """Mark every unrevoked row of ``queryset``, drop its ``AccessToken`` rows, and mark
    the status lists holding them as changed."""
    rows = list(
        queryset.filter(revoked_at__isnull=True).values_list("pk", "jti", "access_token_id", "status_list_id")
    )
    if not rows:
        return []
    for chunk in chunks([pk for pk, _, _, _ in rows]):
        TokenLineage.objects.filter(pk__in=chunk).update(
            revoked_at=now, revocation_reason=reason[:64], access_token=None
        )
    _delete_access_tokens([tid for _, _, tid, _ in rows if tid is not None])
    mark_status_lists({number for _, _, _, number in rows if number is not None})
    return [jti for _, jti, _, _ in rows]


def subtree_q(path: str) -> Q:
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
        subtree = TokenLineage.objects.filter(subtree_q(node.path))
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
            subtree = TokenLineage.objects.filter(subtree_q(path))
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


def revoke_for_client(client_id: str, reason: str = "client_deleted", now: datetime | None = None) -> int:
    """Every live token issued to the client ``client_id``, with their subtrees: an application
    deleted (a compromised client's usual end). Tokens of django-oauth-toolkit's grants go
    with their ``AccessToken`` rows anyway; exchanged tokens have none, only lineage."""
    now = now or timezone.now()
    matching = TokenLineage.objects.filter(client_id=client_id, expires_at__gt=now)
    return _revoke_roots(matching, reason, now)


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


def revoke_issued_to(jti: str, client_id: str, reason: str = "revoked") -> list[str]:
    """RFC 7009 section 2.1 for a token whose record is its lineage row (an exchanged JWT):
    revoked, with its subtree, only when it was issued to ``client_id``, the client that
    asks. Anything else is left alone; the endpoint answers 200 either way."""
    row = TokenLineage.objects.filter(jti=jti).only("client_id", "revoked_at").first()
    if row is None or row.client_id != client_id or row.revoked_at is not None:
        return []
    return revoke_subtree(jti, reason)


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
