"""Every refusal of the backchannel authentication endpoint and of the CIBA poll: the exact
error code (OpenID CIBA Core sections 11 and 13, RFC 9396 section 5, RFC 6749 section 5.2),
``no-store``, an audit record, and nothing stored or issued."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from delegation_idp.models import ApprovalRequest, AuditEvent, DelegationRule
from tests.helpers import assert_oauth_error, snapshot, with_idp

pytestmark = pytest.mark.django_db


def _nothing_changed(before: tuple[int, int], requests: int = 0) -> None:
    assert snapshot() == before
    assert ApprovalRequest.objects.count() == requests


def _audited(event: str, reason: str) -> None:
    assert AuditEvent.objects.filter(event=event, decision="denied", reason=reason).count() == 1


# -- the backchannel authentication request -----------------------------------------------

BAD_REQUESTS = [
    # (parameters, status, error, reason)
    ({"subject_token": None}, 400, "invalid_request", "missing_parameter"),
    ({"audience": None}, 400, "invalid_request", "missing_parameter"),
    ({"login_hint_token": "x"}, 400, "invalid_request", "hint_not_supported"),
    ({"id_token_hint": "x"}, 400, "invalid_request", "hint_not_supported"),
    ({"user_code": "1234"}, 400, "invalid_request", "user_code_not_supported"),
    ({"binding_message": "x" * 101}, 400, "invalid_binding_message", "binding_message_invalid"),
    ({"binding_message": "line\nbreak"}, 400, "invalid_binding_message", "binding_message_invalid"),
    ({"binding_message": ""}, 400, "invalid_request", "empty_parameter"),
    (
        {"authorization_details": "not json"},
        400,
        "invalid_authorization_details",
        "authorization_details_invalid",
    ),
    ({"authorization_details": "{}"}, 400, "invalid_authorization_details", "authorization_details_invalid"),
    ({"authorization_details": "[]"}, 400, "invalid_authorization_details", "authorization_details_invalid"),
    (
        {"authorization_details": json.dumps([{"actions": ["x"]}])},
        400,
        "invalid_authorization_details",
        "authorization_details_invalid",
    ),
    (
        {"authorization_details": '[{"type": "a", "type": "b"}]'},
        400,
        "invalid_authorization_details",
        "authorization_details_invalid",
    ),
    (
        {"authorization_details": json.dumps([{"type": "a", "x": "y" * 5000}])},
        400,
        "invalid_authorization_details",
        "authorization_details_invalid",
    ),
    (
        {"authorization_details": json.dumps([{"type": "a", "x": [[[[["deep"]]]]]}])},
        400,
        "invalid_authorization_details",
        "authorization_details_invalid",
    ),
    ({"requested_expiry": "-5"}, 400, "invalid_request", "invalid_request"),
    ({"requested_expiry": "soon"}, 400, "invalid_request", "invalid_request"),
    ({"subject_token_type": "urn:x"}, 400, "invalid_request", "unsupported_token_type"),
    ({"audience": "https://unknown.example.com"}, 400, "invalid_target", "target_unknown"),
    ({"scope": "tasks.read admin"}, 400, "invalid_scope", "scope_exceeds_subject"),
    ({"HTTP_AUTHORIZATION": "Basic bm9ib2R5Om5vdGhpbmc="}, 401, "invalid_client", "invalid_client"),
]


@pytest.mark.rfc("ciba-13")
@pytest.mark.parametrize(
    ("params", "status", "error", "reason"),
    BAD_REQUESTS,
    ids=[f"{c[3]}-{i}" for i, c in enumerate(BAD_REQUESTS)],
)
def test_ciba_13_a_bad_request_gets_its_code_and_stores_nothing(
    backchannel: Any, user_token: str, approval_rule: Any, params: dict, status: int, error: str, reason: str
) -> None:
    before = snapshot()
    response = backchannel("agent1", user_token, **params)
    assert_oauth_error(response, status, error)
    _nothing_changed(before)
    _audited("backchannel_authentication", reason)


@pytest.mark.rfc("ciba-13")
def test_a_request_for_a_user_the_subject_token_does_not_name(
    backchannel: Any, user_token: str, approval_rule: Any
) -> None:
    before = snapshot()
    response = backchannel("agent1", user_token, login_hint="someone-else")
    assert_oauth_error(response, 400, "unknown_user_id")
    _nothing_changed(before)
    _audited("backchannel_authentication", "approval_user_mismatch")


def test_a_matching_login_hint_is_accepted(backchannel: Any, user_token: str, approval_rule: Any) -> None:
    from tests.helpers import decode

    response = backchannel("agent1", user_token, login_hint=decode(user_token)[1]["sub"])
    assert response.status_code == 200, response.content


@pytest.mark.rfc("8693-2.1")
def test_a_request_that_widens_scope_beyond_the_subject_token(
    backchannel: Any, issue_user_token: Any, approval_rule: Any
) -> None:
    narrow = issue_user_token(scope="tasks.read")
    before = snapshot()
    response = backchannel("agent1", narrow, scope="tasks.read tasks.write")
    assert_oauth_error(response, 400, "invalid_scope")
    _nothing_changed(before)
    _audited("backchannel_authentication", "scope_exceeds_subject")


def test_a_token_addressed_to_another_agent_cannot_ask(
    backchannel: Any, user_token: str, approval_rule: Any
) -> None:
    before = snapshot()
    response = backchannel("agent2", user_token)  # agent1's token, presented by agent2
    assert_oauth_error(response, 400, "invalid_request")
    _nothing_changed(before)
    _audited("backchannel_authentication", "subject_wrong_audience")


def test_a_client_that_is_no_agent_cannot_ask(
    backchannel: Any, user_token: str, approval_rule: Any, clients: Any
) -> None:
    before = snapshot()
    response = backchannel("agent1", user_token, HTTP_AUTHORIZATION=clients["plain-client"].basic)
    assert_oauth_error(response, 400, "unauthorized_client")
    _nothing_changed(before)
    _audited("backchannel_authentication", "not_an_agent")


def test_only_post_and_no_query_string(client: Any, cast: Any) -> None:
    response = client.get("/o/bc-authorize/", HTTP_AUTHORIZATION=cast["agent1"].basic)
    assert_oauth_error(response, 405, "invalid_request")
    response = client.post(
        "/o/bc-authorize/?subject_token=x", "", content_type="application/x-www-form-urlencoded"
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert ApprovalRequest.objects.count() == 0


def test_an_unlisted_authorization_details_type_is_refused(
    backchannel: Any, user_token: str, approval_rule: Any
) -> None:
    with with_idp(AUTHORIZATION_DETAILS_TYPES=["account_information"]):
        response = backchannel("agent1", user_token)  # payment_initiation
        assert_oauth_error(response, 400, "invalid_authorization_details")
        listed = backchannel(
            "agent1", user_token, authorization_details=json.dumps([{"type": "account_information"}])
        )
        assert listed.status_code == 200, listed.content
    assert ApprovalRequest.objects.count() == 1


def test_the_wait_is_the_rules_and_can_only_be_shortened(
    backchannel: Any, user_token: str, approval_rule: DelegationRule
) -> None:
    approval_rule.approval_lifetime = 120
    approval_rule.save()
    assert backchannel("agent1", user_token).json()["expires_in"] == 120
    assert backchannel("agent1", user_token, requested_expiry="30").json()["expires_in"] == 30
    assert backchannel("agent1", user_token, requested_expiry="3000").json()["expires_in"] == 120


# -- the poll ---------------------------------------------------------------------------


@pytest.mark.rfc("ciba-11")
def test_ciba_11_an_expired_request(asked: Any, poll: Any, decide: Any, cast: Any) -> None:
    body, approval = asked
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "expired_token")
    _nothing_changed(before, requests=1)
    _audited("backchannel_token", "approval_expired")
    # Nor can the user approve it any more.
    assert decide(cast.user, approval, "approve").status_code == 409
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.PENDING and approval.state == "expired"


@pytest.mark.rfc("ciba-7.3")
def test_ciba_11_polling_too_fast_slows_the_client_down(asked: Any, poll: Any) -> None:
    body, approval = asked
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "authorization_pending")
    before = snapshot()
    response = poll("agent1", body["auth_req_id"])
    assert_oauth_error(response, 400, "slow_down")
    _nothing_changed(before, requests=1)
    _audited("backchannel_token", "polling_too_fast")
    approval.refresh_from_db()
    assert approval.interval == body["interval"] + 5 and approval.status == ApprovalRequest.PENDING


@pytest.mark.rfc("ciba-11")
def test_the_answer_once_denied(asked: Any, poll: Any, decide: Any, cast: Any) -> None:
    body, approval = asked
    assert decide(cast.user, approval, "deny").status_code == 302
    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "access_denied")
    _nothing_changed(before, requests=1)
    _audited("backchannel_token", "approval_denied")


@pytest.mark.rfc("ciba-11")
@pytest.mark.parametrize("auth_req_id", ["unknown", "x" * 300])
def test_an_unknown_auth_req_id(asked: Any, poll: Any, auth_req_id: str) -> None:
    before = snapshot()
    assert_oauth_error(poll("agent1", auth_req_id), 400, "invalid_grant")
    _nothing_changed(before, requests=1)
    _audited("backchannel_token", "auth_req_id_unknown")


def test_another_client_cannot_poll_for_it(asked: Any, poll: Any, decide: Any, cast: Any) -> None:
    body, approval = asked
    decide(cast.user, approval, "approve")
    before = snapshot()
    assert_oauth_error(poll("agent2", body["auth_req_id"]), 400, "invalid_grant")
    _nothing_changed(before, requests=1)
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.APPROVED and approval.polled_at is None


def test_a_poll_without_auth_req_id(poll: Any, token_endpoint: Any, cast: Any) -> None:
    from delegation_idp.ciba import GRANT_TYPE

    response = token_endpoint({"grant_type": GRANT_TYPE}, cast["agent1"])
    assert_oauth_error(response, 400, "invalid_request")


def test_a_policy_change_after_approval_cancels_it(
    asked: Any, poll: Any, decide: Any, cast: Any, approval_rule: DelegationRule
) -> None:
    body, approval = asked
    decide(cast.user, approval, "approve")
    approval_rule.enabled = False
    approval_rule.save()
    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "access_denied")
    assert snapshot() == before
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.CANCELLED and approval.cancel_reason
    _audited("backchannel_token", "approval_cancelled")


# -- DPoP (RFC 9449): the poll proves the key of the request ------------------------------


def test_a_bound_request_is_polled_with_the_same_key(
    backchannel: Any, poll: Any, decide: Any, user_token: str, approval_rule: Any, cast: Any
) -> None:
    from tests.e2e.rfc9449.conftest import Prover
    from tests.helpers import decode

    key, other = Prover(), Prover()
    response = backchannel("agent1", user_token, HTTP_DPOP=key.proof(url="http://testserver/o/bc-authorize/"))
    assert response.status_code == 200, response.content
    auth_req_id = response.json()["auth_req_id"]
    approval = ApprovalRequest.objects.get()
    assert approval.jkt == key.jkt
    decide(cast.user, approval, "approve")
    before = snapshot()
    assert_oauth_error(poll("agent1", auth_req_id), 400, "invalid_dpop_proof")
    assert_oauth_error(poll("agent1", auth_req_id, **other.header()), 400, "invalid_dpop_proof")
    assert snapshot() == before
    assert AuditEvent.objects.filter(reason="approval_dpop_mismatch").count() == 2
    answer = poll("agent1", auth_req_id, **key.header())
    assert answer.status_code == 200, answer.content
    assert answer.json()["token_type"] == "DPoP"
    assert decode(answer.json()["access_token"])[1]["cnf"] == {"jkt": key.jkt}


def test_a_poll_that_loses_to_a_cancellation_is_told_it_was_cancelled(
    asked: Any, poll: Any, decide: Any, cast: Any, monkeypatch: Any
) -> None:
    """The request is cancelled between the poll's checks and its taking it for issuance."""
    from delegation_idp.ciba import approvals

    body, approval = asked
    decide(cast.user, approval, "approve")
    claim = approvals.claim

    def cancelled_first(request: ApprovalRequest) -> bool:
        approvals.cancel(request, "subject_revoked")
        return claim(request)

    monkeypatch.setattr(approvals, "claim", cancelled_first)
    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "access_denied")
    assert snapshot() == before
    assert AuditEvent.objects.filter(event="backchannel_token", reason="approval_cancelled").count() == 1
