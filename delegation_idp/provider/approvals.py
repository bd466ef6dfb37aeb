"""The approval page (OpenID CIBA): where the signed-in user sees the delegations that wait
for them and approves or denies each one.

Each request shows the whole chain of agents asking, by name, newest first (the agent asking
now labelled, then each agent it acts for, down to the user); the audiences and resources,
the scope and the RFC 9396 ``authorization_details`` as readable rows; the binding message
and the time left (in seconds and as a time of day). Only the user the subject token names
sees a request or decides it: for anyone else it does not exist (404). Decisions are
``POST`` with Django's CSRF protection (on the views themselves, whatever the site's
middleware); each one leaves an audit record
(:data:`delegation_idp.ciba.DECISION_EVENT`), and a refused one changes nothing. Every
answer is ``Cache-Control: no-store`` and ``X-Frame-Options: DENY`` (whatever the site's
middleware: a framed page would let another site steer the click); signing in is the
site's (``LOGIN_URL``).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect

from delegation_idp import audit
from delegation_idp.ciba import DECISION_EVENT, approvals
from delegation_idp.core.reasons import Reason
from delegation_idp.models import ApprovalRequest, Party

__all__ = ["ApprovalDecisionView", "ApprovalListView", "describe", "detail_rows", "label"]

#: RFC 9396 section 2.2's common fields, in this order after ``type``, with their labels.
COMMON_FIELDS = {
    "locations": _("Locations"),
    "actions": _("Actions"),
    "datatypes": _("Data types"),
    "identifier": _("Identifier"),
    "privileges": _("Privileges"),
}
#: Nested objects deeper than this are shown as one line of ``key: value`` pairs.
MAX_DEPTH = 4
DECISIONS = {"approve": True, "deny": False}


def _names(uris: set[str]) -> dict[str, str]:
    return dict(Party.objects.filter(uri__in=sorted(uris)).values_list("uri", "name"))


def _party(uri: str, names: dict[str, str]) -> dict[str, str]:
    return {"uri": uri, "name": names.get(uri) or ""}


def describe(approval: ApprovalRequest, names: dict[str, str], now: datetime) -> dict[str, Any]:
    """What the page shows of one request. ``approval.chain`` is nearest first: its first
    agent is the one asking now, the last the one the user's own token was issued to."""
    chain = [_party(uri, names) for uri in approval.chain]
    for position, actor in enumerate(chain):
        actor["role"] = "requester" if position == 0 else "delegator"
    return {
        "id": approval.pk,
        "requester": chain[0] if chain else _party(approval.requester, names),
        "chain": chain,
        "audience": [_party(uri, names) for uri in approval.audience],
        "resources": [_party(uri, names) for uri in approval.resources],
        "scopes": approval.scope.split(),
        "details": [detail_rows(d) for d in approval.authorization_details if isinstance(d, dict)],
        "binding_message": approval.binding_message,
        "created_at": approval.created_at,
        "seconds_left": max(0, int((approval.expires_at - now).total_seconds())),
        "expires_at": approval.expires_at,
    }


def label(key: str) -> str:
    """A field name as words: ``instructedAmount`` and ``instructed_amount`` are
    "Instructed amount"; RFC 9396's common fields keep their documented labels."""
    if key in COMMON_FIELDS:
        return str(COMMON_FIELDS[key])
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ").split()
    text = " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in words)  # IBAN stays
    return text[:1].upper() + text[1:] if text else key


def detail_rows(detail: dict[str, Any]) -> dict[str, Any]:
    """One ``authorization_details`` object as its ``type`` and rows: the common fields
    first (RFC 9396 section 2.2), then the type's own fields in their order."""
    ordered = [k for k in COMMON_FIELDS if k in detail] + [
        k for k in detail if k != "type" and k not in COMMON_FIELDS
    ]
    return {"type": str(detail.get("type", "")), "rows": [_row(k, detail[k], 1) for k in ordered]}


def _row(key: str, value: Any, depth: int) -> dict[str, Any]:
    """``{"key", "label", ...}`` and one of ``text`` (a scalar, or a flat list joined),
    ``rows`` (an object), ``groups`` (a list of objects, each its rows)."""
    row: dict[str, Any] = {"key": key, "label": label(key)}
    if isinstance(value, dict):
        money = _money(value)
        if money is not None:
            row["text"] = money
        elif depth >= MAX_DEPTH:
            row["text"] = _flat(value)
        else:
            row["rows"] = [_row(k, v, depth + 1) for k, v in value.items()]
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value) and depth < MAX_DEPTH:
        row["groups"] = [
            [_row(k, v, depth + 1) for k, v in item.items()]
            if isinstance(item, dict)
            else [{"key": "", "label": "", "text": _flat(item)}]
            for item in value
        ]
    elif isinstance(value, list):
        row["text"] = ", ".join(_flat(v) for v in value)
    else:
        row["text"] = _flat(value)
    return row


def _money(value: dict[str, Any]) -> str | None:
    """``{"amount": "123.50", "currency": "EUR"}`` (as in RFC 9396's examples) as "123.50 EUR"."""
    if set(value) == {"amount", "currency"} and all(isinstance(v, (str, int, float)) for v in value.values()):
        return f"{value['amount']} {value['currency']}"
    return None


def _flat(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    if isinstance(value, dict):
        return "; ".join(f"{label(str(k))}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return str(value)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _decided_note(request: HttpRequest, names: dict[str, str]) -> dict[str, Any] | None:
    """The note after a decision (``?decided=<id>``): only of a request of this user's that
    they decided; anything else in the address shows nothing."""
    try:
        pk = uuid.UUID(str(request.GET.get("decided", "")))
    except ValueError:
        return None
    user: Any = request.user  # signed in (LoginRequiredMixin)
    approval = ApprovalRequest.objects.filter(pk=pk, user=user, decided_by=user).first()
    if approval is None or approval.status == ApprovalRequest.PENDING:
        return None
    names.update(_names({approval.requester, *approval.audience}))
    return {
        "approved": approval.status in (ApprovalRequest.APPROVED, ApprovalRequest.ISSUED),
        "requester": _party(approval.chain[0] if approval.chain else approval.requester, names),
        "audience": [_party(uri, names) for uri in approval.audience],
        "binding_message": approval.binding_message,
    }


@method_decorator(xframe_options_deny, name="dispatch")  # never framed: a click here decides
@method_decorator(csrf_protect, name="dispatch")  # sets the token its forms carry
class ApprovalListView(LoginRequiredMixin, View):
    """``GET``: the signed-in user's pending requests, newest first."""

    template_name = "delegation_idp/approvals.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        now = timezone.now()
        pending = approvals.pending_for(request.user, now)
        names = _names({u for a in pending for u in (*a.chain, *a.audience, *a.resources)})
        context = {
            "requests": [describe(a, names, now) for a in pending],
            "decided": _decided_note(request, names),
            "now": now,
        }
        return _no_store(render(request, self.template_name, context))


@method_decorator(xframe_options_deny, name="dispatch")
@method_decorator(csrf_protect, name="dispatch")  # whatever the site's middleware
class ApprovalDecisionView(LoginRequiredMixin, View):
    """``POST`` ``decision=approve`` or ``decision=deny`` for one request of the user's."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: Any) -> HttpResponse:
        user: Any = request.user  # signed in (LoginRequiredMixin)
        choice = request.POST.get("decision", "")
        with audit.attempt(event=DECISION_EVENT, user_id=str(user.pk)) as record:
            record.approved_by = str(user.pk)
            if choice not in DECISIONS:
                record.refuse(Reason.INVALID_REQUEST)
                return _refused(request, Reason.INVALID_REQUEST, None)
            decided = approvals.decide(pk, user, approve=DECISIONS[choice])
            if decided is None:
                # Another user's request is not told apart from no request at all.
                mine = ApprovalRequest.objects.filter(pk=pk, user=user).first()
                reason = Reason.APPROVAL_NOT_FOUND if mine is None else Reason.APPROVAL_ALREADY_DECIDED
                if mine is not None:
                    _describe(record, mine)
                record.refuse(reason)
                return _refused(request, reason, mine)
            _describe(record, decided)
            if DECISIONS[choice]:
                record.grant()
            else:
                record.refuse(Reason.APPROVAL_DENIED)
        return _no_store(HttpResponseRedirect(f"{reverse('oauth2_provider:approvals')}?decided={decided.pk}"))


def _describe(record: audit.Attempt, approval: ApprovalRequest) -> None:
    record.client_id, record.chain = approval.client_id, list(approval.chain)
    record.subject = str(approval.subject_claims.get("sub", ""))
    record.parent_jti = approval.subject_jti
    record.requested_audience, record.requested_scope = list(approval.audience), approval.scope


def _refused(request: HttpRequest, reason: Reason, approval: ApprovalRequest | None) -> HttpResponse:
    """The refusal page, with the request's state when it is the user's (decided, expired,
    cancelled)."""
    context = {"reason": reason, "state": approval.state if approval is not None else ""}
    return _no_store(render(request, "delegation_idp/approval_refused.html", context, status=reason.status))
