"""The approval requests of OpenID CIBA: opened by an agent, decided by the user, redeemed
once by the agent's poll, cancelled when what they rely on goes.

Only the SHA-256 of an ``auth_req_id`` is stored (like a client secret, it authorizes the
poll), and it is looked up together with the client it was issued to. Every change of state
is one conditional ``UPDATE`` (``WHERE status = ...``), so two polls, or a poll and a
decision, never both win.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.mail import send_mail
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone

from delegation_idp import signals
from delegation_idp.conf import idp_settings
from delegation_idp.core.approval import request_fingerprint
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Exchange
from delegation_idp.models import ApprovalRequest, Party, TokenLineage

__all__ = [
    "Opened",
    "approval_url",
    "cancel_for_subjects",
    "decide",
    "digest",
    "find",
    "open_request",
    "pending_for",
]

logger = logging.getLogger(__name__)

#: CIBA Core section 7.4: a client that polls too fast waits this much longer each time.
SLOW_DOWN_STEP = 5


def digest(auth_req_id: str) -> str:
    """What is stored of an ``auth_req_id``: its SHA-256, never the value."""
    return hashlib.sha256(auth_req_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Opened:
    """A request just stored: the ``auth_req_id`` for the agent (only here, never again)."""

    auth_req_id: str
    approval: ApprovalRequest


def open_request(
    exchange: Exchange,
    *,
    user: Any,
    subject_claims: Mapping[str, Any],
    binding_message: str,
    authorization_details: tuple[Mapping[str, Any], ...],
    requested_expiry: int | None,
    now: datetime,
    proof_jkt: str = "",
) -> Opened:
    """Store the request for the allowed ``exchange``; ``proof_jkt`` is the DPoP key the request
    proved, which every poll must prove too (the token's own binding is the exchange's: an
    ID-JAG's is none). Approved at once when the rule allows
    reuse and the user approved an identical request within its window. Refused
    (``approval_too_many``) when the client already keeps ``APPROVAL_MAX_PENDING`` requests
    waiting for the user."""
    terms = exchange.approval
    lifetime = (terms.lifetime if terms is not None else None) or int(idp_settings.APPROVAL_REQUEST_LIFETIME)
    if requested_expiry is not None:
        lifetime = min(lifetime, requested_expiry)
    # Never beyond the subject token, which the token could not outlive either.
    lifetime = max(1, min(lifetime, exchange.subject_exp - int(now.timestamp())))
    fingerprint = request_fingerprint(
        user=user.pk,
        chain=exchange.chain,
        audience=exchange.audience,
        resources=exchange.resources,
        scope=exchange.scope,
        authorization_details=authorization_details,
        requested_token_type=exchange.issued_token_type,
    )
    reuse_seconds = terms.reuse_seconds if terms is not None else 0
    earlier = _reusable(fingerprint, exchange.client_id, now) if reuse_seconds else None
    if earlier is None and _too_many(user, exchange.client_id, now):
        raise refusal(Reason.APPROVAL_TOO_MANY)  # nothing stored, nobody notified
    auth_req_id = secrets.token_urlsafe(32)
    approval = ApprovalRequest.objects.create(
        auth_req_id_hash=digest(auth_req_id),
        client_id=exchange.client_id,
        requester=exchange.requester,
        user=user,
        subject_jti=exchange.parent_jti,
        subject_claims=_kept_claims(subject_claims),
        chain=list(exchange.chain),
        audience=list(exchange.audience),
        resources=list(exchange.resources),
        scope=exchange.scope,
        authorization_details=list(authorization_details),
        binding_message=binding_message,
        requested_token_type=exchange.issued_token_type,
        fingerprint=fingerprint,
        jkt=proof_jkt,
        rule_id=exchange.rule_id,
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime),
        interval=int(idp_settings.APPROVAL_POLL_INTERVAL),
        reuse_seconds=reuse_seconds,
        **(
            {
                "status": ApprovalRequest.APPROVED,
                "decided_at": now,
                "decided_by_id": earlier.decided_by_id,
                "reused_from": earlier,
            }
            if earlier is not None
            else {}
        ),
    )
    if earlier is not None:
        signals.approval_decided.send(sender=ApprovalRequest, approval=approval, approved=True, by=None)
    else:
        _notify(approval)
    return Opened(auth_req_id, approval)


# What the poll needs of the subject token to decide again: its claims, never its signature.
_KEPT = ("sub", "client_id", "aud", "scope", "act", "exp", "may_act", "jti", "cnf")


def _kept_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {name: claims[name] for name in _KEPT if name in claims}


def _too_many(user: Any, client_id: str, now: datetime) -> bool:
    """Whether ``client_id`` already keeps ``APPROVAL_MAX_PENDING`` requests waiting for
    ``user``: an agent may not flood the user's page and mailbox."""
    limit = int(idp_settings.APPROVAL_MAX_PENDING)
    return _waiting(user, now).filter(client_id=client_id)[:limit].count() >= limit


def _reusable(fingerprint: str, client_id: str, now: datetime) -> ApprovalRequest | None:
    """The newest request with the same fingerprint, of the same client, that its user
    approved (not a reuse of another), whose reuse window is still open and whose subject
    token is unrevoked: revoking it withdraws what the user approved under it."""
    live = TokenLineage.objects.filter(jti=OuterRef("subject_jti"), revoked_at__isnull=True)
    return (
        ApprovalRequest.objects.filter(
            Exists(live),
            fingerprint=fingerprint,
            client_id=client_id,
            status__in=(ApprovalRequest.APPROVED, ApprovalRequest.ISSUED),
            reused_from__isnull=True,
            decided_by__isnull=False,
            reuse_until__gt=now,
        )
        .order_by("-decided_at")
        .first()
    )


def find(auth_req_id: str, client_id: str) -> ApprovalRequest | None:
    """The request ``auth_req_id`` names, if it was issued to ``client_id``."""
    return ApprovalRequest.objects.filter(auth_req_id_hash=digest(auth_req_id), client_id=client_id).first()


def note_poll(approval: ApprovalRequest, now: datetime) -> bool:
    """Record a poll; False when it came sooner than the interval (CIBA Core section 7.3),
    and then the interval grows by :data:`SLOW_DOWN_STEP` (section 11, ``slow_down``)."""
    early = approval.polled_at is not None and now < approval.polled_at + timedelta(seconds=approval.interval)
    changes: dict[str, Any] = {"polled_at": now}
    if early:
        changes["interval"] = F("interval") + SLOW_DOWN_STEP
    ApprovalRequest.objects.filter(pk=approval.pk).update(**changes)
    return not early


def claim(approval: ApprovalRequest) -> bool:
    """Take an approved request for issuance (inside the issuing transaction): False when
    another poll took it first."""
    return bool(
        ApprovalRequest.objects.filter(pk=approval.pk, status=ApprovalRequest.APPROVED).update(
            status=ApprovalRequest.ISSUED
        )
    )


def cancel(approval: ApprovalRequest, reason: str) -> None:
    ApprovalRequest.objects.filter(
        pk=approval.pk, status__in=(ApprovalRequest.PENDING, ApprovalRequest.APPROVED)
    ).update(status=ApprovalRequest.CANCELLED, cancel_reason=reason[:64])


def _waiting(user: Any, now: datetime) -> Any:
    """``user``'s pending, unexpired requests whose subject token is still unrevoked (also when
    a revocation reached the database without ``token_revoked``, e.g. a bulk update)."""
    live = TokenLineage.objects.filter(jti=OuterRef("subject_jti"), revoked_at__isnull=True)
    return ApprovalRequest.objects.filter(
        Exists(live), user=user, status=ApprovalRequest.PENDING, expires_at__gt=now
    )


def subject_live(approval: ApprovalRequest) -> bool:
    """Whether the request's subject token is still unrevoked."""
    return TokenLineage.objects.filter(jti=approval.subject_jti, revoked_at__isnull=True).exists()


def pending_for(user: Any, now: datetime | None = None) -> list[ApprovalRequest]:
    """The requests waiting for ``user``'s decision, newest first."""
    return list(_waiting(user, now or timezone.now()).order_by("-created_at"))


def decide(
    approval_id: Any, user: Any, *, approve: bool, now: datetime | None = None
) -> ApprovalRequest | None:
    """The user's decision on one of their pending requests; None when ``approval_id`` names
    no pending, unexpired request of ``user`` (another user's, decided, expired, cancelled):
    then nothing changes."""
    now = now or timezone.now()
    rows = _waiting(user, now).filter(pk=approval_id)
    approval = rows.first()
    if approval is None:
        return None
    changes: dict[str, Any] = {
        "status": ApprovalRequest.APPROVED if approve else ApprovalRequest.DENIED,
        "decided_at": now,
        "decided_by": user,
    }
    if approve and approval.reuse_seconds:
        changes["reuse_until"] = now + timedelta(seconds=approval.reuse_seconds)
    if not rows.update(**changes):
        return None  # decided meanwhile
    approval.refresh_from_db()
    signals.approval_decided.send(sender=ApprovalRequest, approval=approval, approved=approve, by=user)
    return approval


def cancel_for_subjects(jtis: Iterable[str], reason: str) -> int:
    """Cancel the open requests that present one of ``jtis`` (revoked tokens) as their subject."""
    total = 0
    jtis = list(jtis)
    for start in range(0, len(jtis), 500):
        total += ApprovalRequest.objects.filter(
            subject_jti__in=jtis[start : start + 500],
            status__in=(ApprovalRequest.PENDING, ApprovalRequest.APPROVED),
        ).update(status=ApprovalRequest.CANCELLED, cancel_reason=reason[:64])
    return total


def approval_url(approval: ApprovalRequest | None = None) -> str:
    """The approval page's absolute URL (``APPROVAL_URL``, or the issuer's origin and the path)."""
    configured = idp_settings.APPROVAL_URL
    if configured:
        return str(configured)
    parts = urlsplit(str(idp_settings.ISSUER or ""))
    return f"{parts.scheme}://{parts.netloc}{reverse('oauth2_provider:approvals')}"


def _notify(approval: ApprovalRequest) -> None:
    """``approval_requested``, and the optional email (``APPROVAL_EMAIL_FROM``) to the user."""
    url = approval_url(approval)
    sender = idp_settings.APPROVAL_EMAIL_FROM
    address = getattr(approval.user, "email", "") or ""
    if sender and address:
        names = dict(
            Party.objects.filter(uri__in=[approval.requester, *approval.audience]).values_list("uri", "name")
        )
        requester = names.get(approval.requester) or approval.requester
        toward = ", ".join(names.get(uri) or uri for uri in approval.audience)
        try:
            send_mail(
                subject="An agent asks for your approval",
                message=(
                    f"{requester} asks to act for you toward {toward}"
                    + (f": {approval.binding_message}" if approval.binding_message else ".")
                    + f"\n\nApprove or deny it here: {url}\n"
                ),
                from_email=str(sender),
                recipient_list=[address],
                fail_silently=False,
            )
        except Exception:  # the request stands; the user can still find it on the page
            logger.exception("approval email could not be sent (approval %s)", approval.pk)
    signals.approval_requested.send(sender=ApprovalRequest, approval=approval, url=url)
