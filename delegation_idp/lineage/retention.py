"""Retention: expired tokens and records past their retention, deleted in bounded batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from delegation_idp.conf import idp_settings
from delegation_idp.lineage.revocation import cascading
from delegation_idp.models import ApprovalRequest, AuditEvent, OpaqueRedemption, TokenLineage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    access_tokens: int = 0
    lineage: int = 0
    audit: int = 0
    approvals: int = 0


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
      ``LINEAGE_RETENTION_SECONDS`` ago, and the approval requests (OpenID CIBA) that
      expired as long ago (the token issued on one outlives it only by that retention);
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
    approvals = _delete_in_batches(ApprovalRequest.objects.filter(expires_at__lt=now - retention), size)
    audit = 0
    if idp_settings.AUDIT_RETENTION_SECONDS is not None:
        cutoff = now - timedelta(seconds=idp_settings.AUDIT_RETENTION_SECONDS)
        audit = _delete_in_batches(AuditEvent.objects.filter(created__lt=cutoff), size)
    if tokens or lineage or audit or approvals:
        logger.info(
            "swept %d access tokens, %d lineage records, %d audit events, %d approval requests",
            tokens,
            lineage,
            audit,
            approvals,
        )
    return SweepResult(access_tokens=tokens, lineage=lineage, audit=audit, approvals=approvals)
