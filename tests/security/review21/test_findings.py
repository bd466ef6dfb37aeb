"""Findings of the hostile review of the user in the loop (OpenID CIBA poll mode): each test
fails on the code it was written against and names the fix in its docstring."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.views.debug import SafeExceptionReporterFilter

from delegation_idp.checks import check_approvals
from delegation_idp.lineage import revocation
from delegation_idp.models import ApprovalRequest, AuditEvent, DelegationRule
from tests.helpers import assert_oauth_error, with_idp

pytestmark = pytest.mark.django_db


@pytest.fixture
def reusable(approval_rule: DelegationRule) -> DelegationRule:
    approval_rule.approval_reuse_seconds = 600
    approval_rule.save()
    return approval_rule


def _approve_and_redeem(backchannel: Any, poll: Any, decide: Any, cast: Any, token: str) -> ApprovalRequest:
    body = backchannel("agent1", token).json()
    approval = ApprovalRequest.objects.order_by("-created_at").first()
    assert approval is not None
    assert decide(cast.user, approval, "approve").status_code == 302
    assert poll("agent1", body["auth_req_id"]).status_code == 200
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.ISSUED
    return approval


# -- F1 (medium): an approval is reused after the token it was given under was revoked ------


def test_a_revoked_subject_ends_the_reuse_of_its_approval(
    backchannel: Any,
    poll: Any,
    decide: Any,
    cast: Any,
    user_token: str,
    issue_user_token: Any,
    reusable: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The user approved agent1's hop under ``user_token`` (reuse window 600 s), then revoked
    that token: the delegation they approved is withdrawn. agent1 comes back with another
    token of the same user (a refresh, a new sign-in) and the identical request: it must be
    put to the user again, not approved at once from the approval given under the revoked
    token. (An ISSUED approval was never cancelled by the revocation and stayed reusable,
    while an APPROVED one not yet polled was cancelled: the fix requires the earlier
    approval's subject token to be unrevoked, as the page does for pending ones.)"""
    first = _approve_and_redeem(backchannel, poll, decide, cast, user_token)
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(first.subject_jti, reason="revoked")
    fresh = issue_user_token()
    body = backchannel("agent1", fresh).json()
    second = ApprovalRequest.objects.exclude(pk=first.pk).get()
    assert second.reused_from_id is None and second.status == ApprovalRequest.PENDING
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "authorization_pending")


def test_an_unrevoked_subject_still_reuses_across_tokens(
    backchannel: Any, poll: Any, decide: Any, cast: Any, user_token: str, issue_user_token: Any, reusable: Any
) -> None:
    """The fix keeps the reuse: another live token of the same user and chain is covered."""
    first = _approve_and_redeem(backchannel, poll, decide, cast, user_token)
    backchannel("agent1", issue_user_token())
    second = ApprovalRequest.objects.exclude(pk=first.pk).get()
    assert second.reused_from_id == first.pk and second.status == ApprovalRequest.APPROVED


# -- F2 (low): a requested_expiry of thousands of digits is a 500 ---------------------------


def test_a_requested_expiry_of_many_digits_is_invalid_request_not_a_500(
    backchannel: Any, user_token: str, approval_rule: Any
) -> None:
    """``int()`` of a string over 4300 digits raises ValueError (CPython's limit on integer
    string conversion), which escaped as ``server_error``. The fix bounds the length before
    converting: ``invalid_request``, audited, nothing stored."""
    response = backchannel("agent1", user_token, requested_expiry="1" * 5000)
    assert_oauth_error(response, 400, "invalid_request")
    assert response["Cache-Control"] == "no-store"
    assert ApprovalRequest.objects.count() == 0
    assert AuditEvent.objects.filter(event="backchannel_authentication", reason="invalid_request").exists()


# -- F3 (low): authorization_details with NaN or Infinity, which are not JSON ----------------


@pytest.mark.parametrize(
    "raw",
    [
        '[{"type": "a", "amount": NaN}]',
        '[{"type": "a", "amount": Infinity}]',
        '[{"type": "a", "amount": 1e400}]',
    ],
    ids=["NaN", "Infinity", "overflow"],
)
def test_authorization_details_that_are_not_json_are_invalid_authorization_details(
    backchannel: Any, user_token: str, approval_rule: Any, raw: str
) -> None:
    """RFC 9396 section 2: ``authorization_details`` is JSON (RFC 8259 has no NaN nor
    Infinity). Python's ``json.loads`` accepts both, and reads ``1e400`` as ``inf``; the value
    then failed to store (``temporarily_unavailable``, telling the agent to retry) or, on a
    database that keeps it, would be signed into the token as non-JSON. The fix refuses
    non-finite numbers while parsing: ``invalid_authorization_details``."""
    response = backchannel("agent1", user_token, authorization_details=raw)
    assert_oauth_error(response, 400, "invalid_authorization_details")
    assert ApprovalRequest.objects.count() == 0


# -- F4 (medium): no bound on the requests waiting for one user -----------------------------


def test_the_requests_one_client_keeps_waiting_for_a_user_are_bounded(
    backchannel: Any, user_token: str, approval_rule: Any, cast: Any, mailoutbox: Any
) -> None:
    """An agent holding a user's token could open any number of approval requests for them:
    each one a row, a row on the user's page and, with ``APPROVAL_EMAIL_FROM``, an email (an
    approval-fatigue flood, and storage without bound until the sweep). The fix bounds the
    pending, unexpired requests of one client for one user (``APPROVAL_MAX_PENDING``):
    beyond it, ``access_denied`` (``approval_too_many``), audited, nothing stored or sent."""
    with with_idp(APPROVAL_MAX_PENDING=3, APPROVAL_EMAIL_FROM="idp@example.com"):
        for _ in range(3):
            assert backchannel("agent1", user_token).status_code == 200
        sent = len(mailoutbox)
        response = backchannel("agent1", user_token)
        assert_oauth_error(response, 400, "access_denied")
        assert ApprovalRequest.objects.count() == 3 and len(mailoutbox) == sent
        assert (
            AuditEvent.objects.filter(event="backchannel_authentication", reason="approval_too_many").count()
            == 1
        )
        # A decided (or expired) request no longer counts.
        ApprovalRequest.objects.filter(pk=ApprovalRequest.objects.first().pk).update(
            status=ApprovalRequest.DENIED
        )
        assert backchannel("agent1", user_token).status_code == 200


def test_check_e038_bounds_approval_max_pending() -> None:
    """The new option is checked like the other approval options."""
    with with_idp(APPROVAL_MAX_PENDING=0):
        assert [e.id for e in check_approvals()] == ["delegation_idp.E038"]


# -- F5 (low): the decision's CSRF protection is the site's middleware, or none --------------


def test_a_decision_without_a_csrf_token_is_refused_whatever_the_middleware(
    asked: Any, cast: Any, settings: Any
) -> None:
    """A decision is a state change a cross-site form could forge (a request the agent made
    approved by a page the user visits). Its CSRF check came from the site's
    ``CsrfViewMiddleware`` only: a site without it (an API-first site) let any other site
    approve. The fix applies ``csrf_protect`` on the view itself, as ``X-Frame-Options`` is."""
    _body, approval = asked
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "django.middleware.csrf.CsrfViewMiddleware"]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast.user)
    response = browser.post(f"/o/approvals/{approval.pk}/", {"decision": "approve"})
    assert response.status_code == 403
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.PENDING
    # With its token (from the page), the decision goes through.
    assert browser.get("/o/approvals/").status_code == 200  # sets the cookie its form needs
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        f"/o/approvals/{approval.pk}/", {"decision": "approve", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


# -- F6 (low): the auth_req_id is not a sensitive parameter in error reports ----------------


def test_the_auth_req_id_is_hidden_from_error_reports(asked: Any, poll: Any) -> None:
    """The ``auth_req_id`` is, with the client's credentials, what redeems an approval (only
    its digest is stored for that reason), but ``sensitive_post_parameters`` did not name it:
    Django's error reports (``ADMINS`` mail, logged 500s) of a poll showed it in clear. The fix
    adds it to the guard's ``SENSITIVE_PARAMETERS``, which every endpoint behind it uses."""
    body, _approval = asked
    response = poll("agent1", body["auth_req_id"])
    shown = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert shown["auth_req_id"] != body["auth_req_id"]
