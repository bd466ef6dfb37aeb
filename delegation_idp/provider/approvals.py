"""The approval page (OpenID CIBA): where the signed-in user sees the delegations that wait
for them and approves or denies each one.

Each request shows the whole chain of agents asking, by name, newest first; the audiences,
the scope and the RFC 9396 ``authorization_details``; the binding message and the time
left. Only the user the subject token names sees a request or decides it: for anyone else
it does not exist (404). Decisions are ``POST`` with Django's CSRF protection; each one
leaves an audit record (:data:`delegation_idp.ciba.DECISION_EVENT`), and a refused one
changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from delegation_idp import audit
from delegation_idp.ciba import DECISION_EVENT, approvals
from delegation_idp.core.reasons import Reason
from delegation_idp.models import ApprovalRequest, Party

__all__ = ["ApprovalDecisionView", "ApprovalListView", "describe"]


def _names(uris: list[str]) -> dict[str, str]:
    return dict(Party.objects.filter(uri__in=uris).values_list("uri", "name"))


def describe(approval: ApprovalRequest, names: dict[str, str], now: Any) -> dict[str, Any]:
    """What the page shows of one request."""
    return {
        "id": approval.pk,
        "chain": [{"uri": uri, "name": names.get(uri) or uri} for uri in approval.chain],
        "audience": [{"uri": uri, "name": names.get(uri) or uri} for uri in approval.audience],
        "resources": list(approval.resources),
        "scopes": approval.scope.split(),
        "details": [_detail(d) for d in approval.authorization_details],
        "binding_message": approval.binding_message,
        "seconds_left": max(0, int((approval.expires_at - now).total_seconds())),
        "expires_at": approval.expires_at,
    }


def _detail(detail: dict[str, Any]) -> dict[str, Any]:
    """An ``authorization_details`` object as a type and readable rows."""
    rows = []
    for key, value in detail.items():
        if key == "type":
            continue
        if isinstance(value, list):
            shown = ", ".join(str(v) if not isinstance(v, (dict, list)) else _compact(v) for v in value)
        elif isinstance(value, dict):
            shown = _compact(value)
        else:
            shown = str(value)
        rows.append((key.replace("_", " "), shown))
    return {"type": str(detail.get("type", "")), "rows": rows}


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_compact(v) for v in value)
    return str(value)


class ApprovalListView(LoginRequiredMixin, View):
    """``GET``: the signed-in user's pending requests, newest first."""

    template_name = "delegation_idp/approvals.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        now = timezone.now()
        pending = approvals.pending_for(request.user, now)
        uris = sorted({u for a in pending for u in (*a.chain, *a.audience)})
        names = _names(uris)
        response = render(
            request,
            self.template_name,
            {"requests": [describe(a, names, now) for a in pending], "decided": request.GET.get("decided")},
        )
        response["Cache-Control"] = "no-store"
        return response


class ApprovalDecisionView(LoginRequiredMixin, View):
    """``POST`` ``decision=approve`` or ``decision=deny`` for one request of the user's."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: Any) -> HttpResponse:
        user: Any = request.user  # signed in (LoginRequiredMixin)
        choice = request.POST.get("decision")
        with audit.attempt(event=DECISION_EVENT, user_id=str(request.user.pk)) as record:
            record.approved_by = str(request.user.pk)
            if choice not in ("approve", "deny"):
                record.refuse(Reason.INVALID_REQUEST)
                return _refused(request, Reason.INVALID_REQUEST)
            decided = approvals.decide(pk, user, approve=choice == "approve")
            if decided is None:
                exists = ApprovalRequest.objects.filter(pk=pk, user=user).exists()
                reason = Reason.APPROVAL_ALREADY_DECIDED if exists else Reason.APPROVAL_NOT_FOUND
                record.refuse(reason)
                return _refused(request, reason)
            _describe(record, decided)
            if choice == "approve":
                record.grant()
            else:
                record.refuse(Reason.APPROVAL_DENIED)
        return HttpResponseRedirect(f"{reverse('oauth2_provider:approvals')}?decided={choice}")


def _describe(record: audit.Attempt, approval: ApprovalRequest) -> None:
    record.client_id, record.chain = approval.client_id, list(approval.chain)
    record.subject = str(approval.subject_claims.get("sub", ""))
    record.parent_jti = approval.subject_jti
    record.requested_audience, record.requested_scope = list(approval.audience), approval.scope


def _refused(request: HttpRequest, reason: Reason) -> HttpResponse:
    response = render(
        request, "delegation_idp/approval_refused.html", {"reason": reason}, status=reason.status
    )
    response["Cache-Control"] = "no-store"
    return response
