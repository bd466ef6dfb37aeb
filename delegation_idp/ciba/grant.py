"""The CIBA grant for oauthlib (OpenID CIBA Core 1.0, poll mode): the backchannel
authentication request and the token request that polls for its answer.

A backchannel authentication request, in order: :func:`~delegation_idp.ciba.request.
parse_backchannel` (the form), client authentication (django-oauth-toolkit's validator),
:func:`~delegation_idp.rfc8693.exchange.verify` (the subject token, the actor token, the DPoP
bindings), the ``login_hint`` against the subject, :func:`~delegation_idp.rfc8693.exchange.
decide` (the targets and the delegation policy, exactly as for a token exchange) and
:func:`~delegation_idp.ciba.approvals.open_request`.

A poll (``grant_type=urn:openid:params:grant-type:ciba``): the request of this client, the
DPoP key of the original request proved again, the interval kept (``slow_down``), then the
state: ``authorization_pending``, ``access_denied``, ``expired_token``, or, once approved,
the subject's lineage and the policy checked again and the token issued once, by
:func:`~delegation_idp.rfc8693.issue.issue`: the token the exchange would have issued, with
the requesting agent as the outermost ``act``, the approved ``authorization_details``, and
the approval on its lineage row and audit record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, router, transaction
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from delegation_idp import audit
from delegation_idp.ciba import GRANT_TYPE, POLL_EVENT, REQUEST_EVENT, approvals
from delegation_idp.ciba.request import parse_backchannel, parse_poll
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.errors import OAuthError, TemporarilyUnavailable, refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.core.types import Exchange, Issuance
from delegation_idp.lineage.issuance import subject_record
from delegation_idp.models import ApprovalRequest, TokenLineage, party_of
from delegation_idp.rfc8693.exchange import Subject, decide, verify
from delegation_idp.rfc8693.grant import TokenExchangeGrant
from delegation_idp.rfc8693.issue import issue, token_response
from delegation_idp.rfc8693.request import ACCESS_TOKEN_TYPE, ExchangeRequest
from delegation_idp.rfc9449 import Proof

__all__ = ["CibaGrant"]

logger = logging.getLogger(__name__)

# The answer of a poll for each settled state that issues nothing.
_SETTLED = {
    ApprovalRequest.DENIED: Reason.APPROVAL_DENIED,
    ApprovalRequest.CANCELLED: Reason.APPROVAL_CANCELLED,
    ApprovalRequest.ISSUED: Reason.AUTH_REQ_ID_USED,
    ApprovalRequest.PENDING: Reason.APPROVAL_PENDING,
}


class CibaGrant(TokenExchangeGrant):
    """``grant_type=urn:openid:params:grant-type:ciba`` and the backchannel authentication
    request. Client authentication and the ``validate_subject_claims`` hook are the token
    exchange's (:class:`~delegation_idp.rfc8693.grant.TokenExchangeGrant`)."""

    GRANT_TYPE = GRANT_TYPE

    def _answer(self, event: str, run: Any, request: Request, *args: Any) -> tuple[dict, str, int]:
        headers = self._get_default_headers()
        with audit.attempt(event=event, grant_type=GRANT_TYPE) as record:
            record.event = event
            try:
                body = run(request, record, *args)
            except (OAuthError, OAuth2Error) as refused:
                ours = isinstance(refused, OAuthError)
                reason = refused.reason if ours else Reason.for_error(refused.error)
                record.deny(refused.error, reason)
                headers.update(refused.headers)
                status = refused.status if isinstance(refused, OAuthError) else refused.status_code
                return headers, refused.json, status
            except DatabaseError:
                logger.exception("CIBA request failed in the database; nothing was stored or issued")
                unavailable = TemporarilyUnavailable(Reason.DATABASE_ERROR)
                record.deny(unavailable.error, unavailable.reason)
                return headers, unavailable.json, unavailable.status
            record.grant()
            return headers, json.dumps(body), 200

    # -- the backchannel authentication request (CIBA Core section 7) --------------------

    def create_backchannel_response(
        self, request: Request, *, form: Sequence[tuple[str, str]], proof: Proof | None = None
    ) -> tuple[dict, str, int]:
        """Section 7.3's acknowledgement (``auth_req_id``, ``expires_in``, ``interval``), or a
        JSON error (section 13); nothing is stored on error."""
        return self._answer(REQUEST_EVENT, self.ask, request, form, proof)

    def ask(
        self, request: Request, record: audit.Attempt, form: Sequence[tuple[str, str]], proof: Proof | None
    ) -> dict[str, Any]:
        record.client_id = record.client_id or getattr(request, "client_id", None) or ""
        asked = parse_backchannel(
            form,
            detail_types=idp_settings.AUTHORIZATION_DETAILS_TYPES,
            max_detail_bytes=int(idp_settings.MAX_AUTHORIZATION_DETAILS_BYTES),
        )
        record.requested_audience = list(asked.exchange.requested_targets)
        record.requested_scope = asked.exchange.scope or ""
        client = self.authenticate(request)
        record.client_id = client.client_id
        now = time.time()
        subject = verify(asked.exchange, client, self, now=now, proof=proof)
        record.subject, record.chain = str(subject.claims["sub"]), [subject.requester.uri, *subject.chain]
        record.parent_jti, record.user_id = subject.parent.jti, str(subject.parent.user_id or "")
        if subject.parent.user_id is None:
            raise refusal(Reason.APPROVAL_NO_USER)  # a client's own token: no user to ask
        if asked.login_hint is not None and asked.login_hint != subject.claims["sub"]:
            raise refusal(Reason.APPROVAL_USER_MISMATCH)
        exchange = decide(asked.exchange, subject, now=now, asking=True)
        record.granted_audience, record.granted_scope = list(exchange.audience), exchange.scope
        opened = approvals.open_request(
            exchange,
            user=subject.parent.user,
            subject_claims=subject.claims,
            binding_message=asked.binding_message,
            authorization_details=asked.authorization_details,
            requested_expiry=asked.requested_expiry,
            now=datetime.fromtimestamp(now, tz=UTC),
            proof_jkt=subject.jkt,
        )
        approval = opened.approval
        if approval.reused_from_id is not None:
            record.approved_by = str(approval.decided_by_id or "")
        return {
            "auth_req_id": opened.auth_req_id,
            "expires_in": max(1, int((approval.expires_at - approval.created_at).total_seconds())),
            "interval": approval.interval,
        }

    # -- the token request (CIBA Core section 10) ------------------------------------------

    def create_token_response(
        self,
        request: Request,
        token_handler: Any = None,
        *,
        form: Sequence[tuple[str, str]] | None = None,
        proof: Proof | None = None,
    ) -> tuple[dict, str, int]:
        """Section 11's token response, or section 11's errors; ``token_handler`` is unused."""
        form = request.decoded_body if form is None else form
        return self._answer(POLL_EVENT, self.poll, request, form or (), proof)

    def poll(
        self, request: Request, record: audit.Attempt, form: Sequence[tuple[str, str]], proof: Proof | None
    ) -> dict[str, Any]:
        record.client_id = record.client_id or getattr(request, "client_id", None) or ""
        auth_req_id = parse_poll(form)
        client = self.authenticate(request)
        record.client_id = client.client_id
        approval = approvals.find(auth_req_id, client.client_id)
        if approval is None:
            raise refusal(Reason.AUTH_REQ_ID_UNKNOWN)
        _describe(record, approval)
        if (proof.jkt if proof is not None else "") != approval.jkt:
            raise refusal(Reason.APPROVAL_DPOP_MISMATCH)
        now = time.time()
        moment = datetime.fromtimestamp(now, tz=UTC)
        if approval.status in (ApprovalRequest.PENDING, ApprovalRequest.APPROVED):
            if moment >= approval.expires_at:
                raise refusal(Reason.APPROVAL_EXPIRED)
            if not approvals.note_poll(approval, moment):
                raise refusal(Reason.POLLING_TOO_FAST)
        if approval.status == ApprovalRequest.PENDING and not approvals.subject_live(approval):
            # Revoked without token_revoked reaching the request (e.g. a bulk update).
            approvals.cancel(approval, "subject_revoked")
            raise refusal(Reason.APPROVAL_CANCELLED)
        if approval.status != ApprovalRequest.APPROVED:
            raise refusal(_SETTLED[approval.status])
        record.approved_by = str(approval.decided_by_id or "")
        exchange = self.decide_again(approval, client, now)
        try:
            token, issuance = self.issue_once(approval, exchange, record, int(now))
        except audit.AuditWriteFailed as exc:
            raise TemporarilyUnavailable(Reason.AUDIT_UNAVAILABLE) from exc
        body = token_response(token, issuance, exchange)
        if exchange.authorization_details:
            body["authorization_details"] = list(exchange.authorization_details)  # RFC 9396 section 7
        return body

    def decide_again(self, approval: ApprovalRequest, client: Any, now: float) -> Exchange:
        """The approved exchange, decided again as of now: the subject's lineage row live, the
        requester still an enabled agent, and the policy still allowing exactly what the user
        approved. Anything else cancels the request (``approval_cancelled``)."""
        parent = subject_record(approval.subject_jti)
        party = party_of(client)
        dead = (
            parent is None
            or parent.revoked_at is not None
            or (parent.user is not None and not parent.user.is_active)
            or party is None
            or policy.may_exchange(
                party.as_view(), confidential=client.client_type == client.CLIENT_CONFIDENTIAL
            )
            is not None
        )
        if dead or parent is None or party is None:
            approvals.cancel(approval, "subject_or_requester_gone")
            raise refusal(Reason.APPROVAL_CANCELLED)
        claims = approval.subject_claims
        subject = Subject(
            claims=claims,
            parent=parent,
            chain=tuple(approval.chain[1:]),
            requester=party,
            client_id=client.client_id,
            user_authorized="act" not in claims and claims.get("client_id") != client.client_id,
            jkt=approval.jkt,
        )
        asked = ExchangeRequest(
            subject_token="",
            subject_token_type=ACCESS_TOKEN_TYPE,
            audiences=tuple(approval.audience),
            resources=tuple(approval.resources),
            scope=approval.scope,
            requested_token_type=approval.requested_token_type,
        )
        try:
            exchange = decide(asked, subject, now=now, asking=True)
        except OAuthError as refused:
            approvals.cancel(approval, refused.reason.value)
            raise refusal(Reason.APPROVAL_CANCELLED) from refused
        if (
            set(exchange.audience) != set(approval.audience)
            or exchange.scope != approval.scope
            or list(exchange.chain) != list(approval.chain)
        ):
            approvals.cancel(approval, "policy_changed")
            raise refusal(Reason.APPROVAL_CANCELLED)
        return dataclasses.replace(
            exchange,
            authorization_details=tuple(approval.authorization_details),
            approval_id=approval.pk,
        )

    @staticmethod
    def issue_once(
        approval: ApprovalRequest, exchange: Exchange, record: audit.Attempt, now: int
    ) -> tuple[str, Issuance]:
        """Issue in one transaction with taking the request: a second poll, or a replay of the
        ``auth_req_id``, finds it taken (``auth_req_id_used``)."""
        with transaction.atomic(using=router.db_for_write(TokenLineage)):
            if not approvals.claim(approval):
                # Another poll took it, or it was cancelled meanwhile: answer what it is now.
                now_status = (
                    ApprovalRequest.objects.filter(pk=approval.pk).values_list("status", flat=True).first()
                )
                raise refusal(_SETTLED.get(now_status or "", Reason.AUTH_REQ_ID_USED))
            token, issuance = issue(exchange, record, now=now)
            ApprovalRequest.objects.filter(pk=approval.pk).update(issued_jti=issuance.jti)
        return token, issuance


def _describe(record: audit.Attempt, approval: ApprovalRequest) -> None:
    """The audit record of a poll names the request's delegation, whatever the answer."""
    record.subject = str(approval.subject_claims.get("sub", ""))
    record.user_id = str(approval.user_id or "")
    record.chain = list(approval.chain)
    record.parent_jti = approval.subject_jti
    record.requested_audience = list(approval.audience)
    record.requested_scope = approval.scope
