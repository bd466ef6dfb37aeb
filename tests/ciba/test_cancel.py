"""What cancels a pending request (issue 21 point 3): its subject token revoked (RFC 7009, or a
subtree revocation), an agent of its chain disabled; and, without any signal, the poll's own
check of the lineage and the requester (``decide_again``). A cancelled request answers the
poll ``access_denied`` (``approval_cancelled``), leaves the page, and cannot be decided."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from delegation_idp import signals
from delegation_idp.ciba import receivers
from delegation_idp.lineage import revocation
from delegation_idp.models import ApprovalRequest, AuditEvent, Party, TokenLineage
from tests.helpers import assert_oauth_error, decode, snapshot

pytestmark = pytest.mark.django_db


def status(approval: ApprovalRequest) -> tuple[str, str]:
    stored = ApprovalRequest.objects.get(pk=approval.pk)
    return stored.status, stored.cancel_reason


def assert_cancelled_poll(poll: Any, auth_req_id: str) -> None:
    before = snapshot()
    body = assert_oauth_error(poll("agent1", auth_req_id), 400, "access_denied")
    assert "cancelled" in body["error_description"]
    assert snapshot() == before
    audited = AuditEvent.objects.filter(event="backchannel_token").latest("pk")
    assert audited.decision == "denied" and audited.reason == "approval_cancelled"


def assert_off_the_page(client: Any, user: Any, approval: ApprovalRequest) -> None:
    client.force_login(user)
    page = client.get("/o/approvals/").content.decode()
    assert str(approval.pk) not in page and 'id="approvals-none"' in page
    before = snapshot()
    response = client.post(f"/o/approvals/{approval.pk}/", {"decision": "approve"})
    html = response.content.decode()
    assert response.status_code == 409 and 'data-reason="approval_already_decided"' in html
    assert 'data-state="cancelled"' in html
    assert status(approval)[0] == ApprovalRequest.CANCELLED
    assert snapshot() == before
    client.logout()


@pytest.fixture
def silent_revocations() -> Any:
    """``token_revoked`` without the CIBA receiver: what cancels then is the poll's own check."""
    signals.token_revoked.disconnect(dispatch_uid="delegation_idp_ciba_cancel")
    try:
        yield
    finally:
        receivers.connect()


def test_rfc7009_revoking_the_subject_token_cancels_the_request(
    asked: Any,
    user_token: str,
    revoke_endpoint: Any,
    cast: Any,
    poll: Any,
    client: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body, approval = asked
    with django_capture_on_commit_callbacks(execute=True):
        assert revoke_endpoint(user_token, cast["agent1"]).status_code == 200
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_revoked")
    assert_cancelled_poll(poll, body["auth_req_id"])
    assert_off_the_page(client, cast.user, approval)


def test_revoking_a_subtree_above_the_subject_cancels_the_request(
    asked: Any, user_token: str, poll: Any, client: Any, cast: Any, django_capture_on_commit_callbacks: Any
) -> None:
    body, approval = asked
    with django_capture_on_commit_callbacks(execute=True):
        revoked = revocation.revoke_subtree(decode(user_token)[1]["jti"], reason="admin")
    assert approval.subject_jti in revoked
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_admin")
    assert_cancelled_poll(poll, body["auth_req_id"])
    assert_off_the_page(client, cast.user, approval)


def test_an_approved_request_not_yet_polled_is_cancelled_too(
    asked: Any, user_token: str, poll: Any, decide: Any, cast: Any, django_capture_on_commit_callbacks: Any
) -> None:
    body, approval = asked
    assert decide(cast.user, approval, "approve").status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(approval.subject_jti, reason="revoked")
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_revoked")
    assert_cancelled_poll(poll, body["auth_req_id"])


def test_disabling_an_agent_of_the_chain_cancels_the_request(
    asked: Any, poll: Any, client: Any, cast: Any, django_capture_on_commit_callbacks: Any
) -> None:
    body, approval = asked
    agent1 = Party.objects.get(uri=cast["agent1"].uri)
    with django_capture_on_commit_callbacks(execute=True):
        agent1.enabled = False
        agent1.save()
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_party_disabled")
    assert_off_the_page(client, cast.user, approval)
    assert_cancelled_poll(poll, body["auth_req_id"])


def test_deactivating_the_user_cancels_the_request(
    asked: Any, cast: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _body, approval = asked
    with django_capture_on_commit_callbacks(execute=True):
        cast.user.is_active = False
        cast.user.save()
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_user_deactivated")


def test_unrelated_revocations_leave_the_request_alone(
    asked: Any, issue_user_token: Any, cast: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _body, approval = asked
    other = issue_user_token("agent2")
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(decode(other)[1]["jti"], reason="revoked")
    assert status(approval) == (ApprovalRequest.PENDING, "")


def test_without_the_signal_a_revoked_subject_is_off_the_page_and_the_poll_cancels(
    silent_revocations: Any,
    asked: Any,
    poll: Any,
    decide: Any,
    cast: Any,
    client: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body, approval = asked
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(approval.subject_jti, reason="revoked")
    assert status(approval) == (ApprovalRequest.PENDING, "")  # nobody told the request
    client.force_login(cast.user)
    assert str(approval.pk) not in client.get("/o/approvals/").content.decode()
    client.logout()
    assert decide(cast.user, approval, "approve").status_code == 409  # not decidable
    assert status(approval) == (ApprovalRequest.PENDING, "")
    assert_cancelled_poll(poll, body["auth_req_id"])
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_revoked")


def test_without_the_signal_the_poll_cancels_an_approval_whose_subject_was_revoked(
    silent_revocations: Any,
    asked: Any,
    poll: Any,
    decide: Any,
    cast: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body, approval = asked
    assert decide(cast.user, approval, "approve").status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(approval.subject_jti, reason="revoked")
    assert status(approval) == (ApprovalRequest.APPROVED, "")  # nobody told the request
    assert_cancelled_poll(poll, body["auth_req_id"])
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_or_requester_gone")


def test_without_the_signal_the_poll_cancels_when_the_lineage_row_is_revoked_in_place(
    asked: Any, poll: Any, decide: Any, cast: Any
) -> None:
    body, approval = asked
    assert decide(cast.user, approval, "approve").status_code == 302
    TokenLineage.objects.filter(jti=approval.subject_jti).update(revoked_at=timezone.now())
    assert_cancelled_poll(poll, body["auth_req_id"])
    assert status(approval) == (ApprovalRequest.CANCELLED, "subject_or_requester_gone")


def test_without_the_signal_the_poll_cancels_when_a_delegating_agent_is_disabled_in_place(
    asked: Any, poll: Any, decide: Any, cast: Any
) -> None:
    body, approval = asked
    assert decide(cast.user, approval, "approve").status_code == 302
    # agent2, the audience, disabled behind the model's back: the policy no longer allows it.
    Party.objects.filter(uri=cast["agent2"].uri).update(enabled=False)
    assert_cancelled_poll(poll, body["auth_req_id"])
    assert status(approval)[0] == ApprovalRequest.CANCELLED
