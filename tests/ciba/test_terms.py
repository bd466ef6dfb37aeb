"""The rule's terms: when a hop needs the user's approval, how long a request waits, and the
reuse of an approval for identical requests within the rule's window."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from delegation_idp.models import ApprovalRequest, DelegationRule
from tests.ciba.conftest import PAYMENT
from tests.helpers import assert_oauth_error, decode, snapshot

pytestmark = pytest.mark.django_db


def _approved_and_issued(backchannel: Any, poll: Any, decide: Any, cast: Any, token: str) -> ApprovalRequest:
    body = backchannel("agent1", token).json()
    approval = ApprovalRequest.objects.order_by("-created_at").first()
    assert approval is not None
    decide(cast.user, approval, "approve")
    assert poll("agent1", body["auth_req_id"]).status_code == 200
    approval.refresh_from_db()
    return approval


@pytest.fixture
def reusable(approval_rule: DelegationRule) -> DelegationRule:
    approval_rule.approval_reuse_seconds = 600
    approval_rule.save()
    return approval_rule


def test_an_identical_request_within_the_window_is_approved_at_once(
    backchannel: Any, poll: Any, decide: Any, cast: Any, user_token: str, reusable: Any
) -> None:
    first = _approved_and_issued(backchannel, poll, decide, cast, user_token)
    assert first.reuse_until is not None and first.reuse_until > timezone.now()
    body = backchannel("agent1", user_token).json()
    second = ApprovalRequest.objects.exclude(pk=first.pk).get()
    assert second.status == ApprovalRequest.APPROVED and second.reused_from_id == first.pk
    assert second.decided_by == cast.user
    answer = poll("agent1", body["auth_req_id"])  # no user action this time
    assert answer.status_code == 200, answer.content
    claims = decode(answer.json()["access_token"])[1]
    assert claims["authorization_details"] == [PAYMENT]


def test_outside_the_window_the_user_is_asked_again(
    backchannel: Any, poll: Any, decide: Any, cast: Any, user_token: str, reusable: Any
) -> None:
    first = _approved_and_issued(backchannel, poll, decide, cast, user_token)
    ApprovalRequest.objects.filter(pk=first.pk).update(reuse_until=timezone.now() - timedelta(seconds=1))
    body = backchannel("agent1", user_token).json()
    second = ApprovalRequest.objects.exclude(pk=first.pk).get()
    assert second.status == ApprovalRequest.PENDING and second.reused_from_id is None
    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "authorization_pending")
    assert snapshot() == before


def test_a_request_that_differs_is_not_covered_by_the_approval(
    backchannel: Any, poll: Any, decide: Any, cast: Any, user_token: str, reusable: Any
) -> None:
    _approved_and_issued(backchannel, poll, decide, cast, user_token)
    other = dict(PAYMENT, instructedAmount={"currency": "EUR", "amount": "9999.00"})
    backchannel("agent1", user_token, authorization_details=json.dumps([other]))
    backchannel("agent1", user_token, scope="tasks.read")
    fresh = ApprovalRequest.objects.filter(reused_from__isnull=True, status=ApprovalRequest.PENDING)
    assert fresh.count() == 2


def test_without_a_reuse_window_every_request_asks(
    backchannel: Any, poll: Any, decide: Any, cast: Any, user_token: str, approval_rule: Any
) -> None:
    _approved_and_issued(backchannel, poll, decide, cast, user_token)
    backchannel("agent1", user_token)
    assert ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING).count() == 1


def test_a_denial_is_never_reused(
    backchannel: Any, decide: Any, cast: Any, user_token: str, reusable: Any
) -> None:
    backchannel("agent1", user_token)
    decide(cast.user, ApprovalRequest.objects.get(), "deny")
    backchannel("agent1", user_token)
    assert ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING).count() == 1


# -- when approval is needed ----------------------------------------------------------------


def test_above_a_scope_only_the_sensitive_scope_needs_approval(
    exchange: Any, user_token: str, cast: Any
) -> None:
    rule = DelegationRule.objects.get(actor__uri=cast["agent1"].uri, audiences__uri=cast["agent2"].uri)
    rule.approval, rule.approval_scopes = DelegationRule.APPROVAL_ABOVE, "tasks.write"
    rule.save()
    assert exchange("agent1", user_token, cast["agent2"].uri, scope="tasks.read").status_code == 200
    refused = exchange("agent1", user_token, cast["agent2"].uri, scope="tasks.read tasks.write")
    assert_oauth_error(refused, 400, "access_denied")
    # Without a scope the subject token's whole scope is asked for, tasks.write included.
    assert_oauth_error(exchange("agent1", user_token, cast["agent2"].uri), 400, "access_denied")


def test_from_a_depth_on_the_deeper_hop_needs_approval(exchange: Any, user_token: str, cast: Any) -> None:
    rule = DelegationRule.objects.get(actor__uri=cast["agent2"].uri, audiences__uri=cast["mcp-server1"].uri)
    rule.approval, rule.approval_min_depth = DelegationRule.APPROVAL_ABOVE, 2
    rule.save()
    first = exchange("agent1", user_token, cast["agent2"].uri)
    assert first.status_code == 200, first.content  # depth 1: agent1's own rule, no approval
    second = exchange("agent2", first.json()["access_token"], cast["mcp-server1"].uri)
    assert_oauth_error(second, 400, "access_denied")


def test_the_approved_token_is_the_exchanges_token(
    asked: Any, poll: Any, decide: Any, cast: Any, exchange: Any, user_token: str, approval_rule: Any
) -> None:
    """The same claims as the token exchange issues for the same hop, plus the approved
    authorization_details (and its own jti, times and status entry)."""
    body, approval = asked
    decide(cast.user, approval, "approve")
    approved = decode(poll("agent1", body["auth_req_id"]).json()["access_token"])
    approval_rule.approval = DelegationRule.APPROVAL_NEVER
    approval_rule.save()
    plain = decode(exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"])
    assert approved[0]["typ"] == plain[0]["typ"] == "at+jwt"
    own = {"jti", "iat", "exp", "status", "authorization_details"}
    assert {k: v for k, v in approved[1].items() if k not in own} == {
        k: v for k, v in plain[1].items() if k not in own
    }
    assert approved[1]["authorization_details"] == [PAYMENT] and "authorization_details" not in plain[1]


@pytest.mark.rfc("ciba-4")
def test_metadata_advertises_the_endpoint_the_grant_and_the_mode(client: Any) -> None:
    from delegation_idp.ciba import GRANT_TYPE

    data = client.get("/.well-known/oauth-authorization-server").json()
    assert data["backchannel_authentication_endpoint"].endswith("/o/bc-authorize/")
    assert data["backchannel_token_delivery_modes_supported"] == ["poll"]
    assert data["backchannel_user_code_parameter_supported"] is False
    assert GRANT_TYPE in data["grant_types_supported"]
    assert "authorization_details_types_supported" not in data  # any type


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("APPROVAL_REQUEST_LIFETIME", 5),
        ("APPROVAL_REQUEST_LIFETIME", "300"),
        ("APPROVAL_POLL_INTERVAL", 0),
        ("APPROVAL_POLL_INTERVAL", True),
        ("MAX_AUTHORIZATION_DETAILS_BYTES", 10**6),
        ("AUTHORIZATION_DETAILS_TYPES", "payment_initiation"),
        ("AUTHORIZATION_DETAILS_TYPES", [""]),
        ("APPROVAL_URL", "http://idp.example.com/o/approvals/"),
        ("APPROVAL_URL", "/o/approvals/"),
        ("APPROVAL_EMAIL_FROM", "idp@example.com\nBcc: x@example.com"),
    ],
)
def test_check_e038_refuses_approval_options_out_of_bounds(option: str, value: Any) -> None:
    from delegation_idp.checks import check_approvals
    from tests.helpers import with_idp

    assert check_approvals() == []
    with with_idp(**{option: value}):
        assert [e.id for e in check_approvals()] == ["delegation_idp.E038"]
    with with_idp(APPROVAL_URL="https://idp.example.com/o/approvals/", APPROVAL_EMAIL_FROM="idp@example.com"):
        assert check_approvals() == []


def test_the_sweep_deletes_approval_requests_past_retention(asked: Any) -> None:
    from delegation_idp.lineage.retention import sweep_expired

    _body, approval = asked
    assert sweep_expired().approvals == 0
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(days=31))
    assert sweep_expired().approvals == 1
    assert not ApprovalRequest.objects.exists()
