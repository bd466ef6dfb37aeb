"""OpenID CIBA Core 1.0 (poll mode) as the next hop of a delegation chain: ask, approve, poll."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import ApprovalRequest, AuditEvent, TokenLineage
from tests.ciba.conftest import PAYMENT
from tests.helpers import assert_oauth_error, decode, snapshot

pytestmark = pytest.mark.django_db


def test_ciba_7_3_the_acknowledgement_and_the_stored_request(asked: Any, cast: Any) -> None:
    body, approval = asked
    assert set(body) == {"auth_req_id", "expires_in", "interval"}
    assert body["interval"] == 5 and 0 < body["expires_in"] <= 300
    assert approval.status == ApprovalRequest.PENDING and approval.user == cast.user
    assert approval.chain == [cast["agent1"].uri] and approval.audience == [cast["agent2"].uri]
    assert approval.authorization_details == [PAYMENT]
    assert body["auth_req_id"] not in approval.auth_req_id_hash  # only its digest is kept


def test_an_exchange_that_needs_approval_is_refused_with_its_own_reason(
    exchange: Any, user_token: str, approval_rule: Any, cast: Any
) -> None:
    before = snapshot()
    response = exchange("agent1", user_token, cast["agent2"].uri)
    body = assert_oauth_error(response, 400, "access_denied")
    assert "approval" in body["error_description"] and "backchannel" in body["error_description"]
    assert snapshot() == before
    assert AuditEvent.objects.filter(event="token_exchange", reason="approval_required").count() == 1


def test_ciba_11_pending_then_approved_then_the_token_then_used(
    asked: Any, poll: Any, decide: Any, cast: Any
) -> None:
    body, approval = asked
    pending = poll("agent1", body["auth_req_id"])
    assert_oauth_error(pending, 400, "authorization_pending")
    ApprovalRequest.objects.filter(pk=approval.pk).update(polled_at=None)
    assert decide(cast.user, approval, "approve").status_code == 302
    answer = poll("agent1", body["auth_req_id"])
    assert answer.status_code == 200, answer.content
    token = answer.json()
    assert token["token_type"] == "Bearer" and token["authorization_details"] == [PAYMENT]
    _header, claims = decode(token["access_token"])
    assert claims["sub"] == approval.subject_claims["sub"]
    assert claims["aud"] == cast["agent2"].uri
    assert claims["act"] == {"sub": cast["agent1"].uri}
    assert claims["authorization_details"] == [PAYMENT]
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert row.approval_id == approval.pk and row.parent_jti == approval.subject_jti
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.ISSUED and approval.issued_jti == claims["jti"]
    assert approval.decided_by == cast.user
    issued = AuditEvent.objects.get(event="backchannel_token", decision="granted")
    assert issued.approved_by == str(cast.user.pk) and issued.jti == claims["jti"]
    # Replaying the auth_req_id after the token was issued.
    ApprovalRequest.objects.filter(pk=approval.pk).update(polled_at=None)
    before = snapshot()
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "invalid_grant")
    assert snapshot() == before


@pytest.mark.rfc("9396-9.2")
def test_introspection_shows_the_approved_authorization_details(
    asked: Any, poll: Any, decide: Any, cast: Any, introspect: Any
) -> None:
    body, approval = asked
    decide(cast.user, approval, "approve")
    token = poll("agent1", body["auth_req_id"]).json()["access_token"]
    seen = introspect(token, cast["agent2"]).json()
    assert seen["active"] is True and seen["authorization_details"] == [PAYMENT]
    assert seen["act"] == {"sub": cast["agent1"].uri}


def test_a_deeper_hop_continues_the_chain(
    backchannel: Any, poll: Any, decide: Any, exchange: Any, user_token: str, cast: Any
) -> None:
    """agent2, holding agent1's exchanged token, asks for the hop to the MCP server: the user
    sees agent2 then agent1, and the token records agent2 as the outermost actor."""
    from delegation_idp.models import DelegationRule

    rule = DelegationRule.objects.get(actor__uri=cast["agent2"].uri, audiences__uri=cast["mcp-server1"].uri)
    rule.approval = DelegationRule.APPROVAL_ALWAYS
    rule.save()
    hop = exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"]
    asked = backchannel("agent2", hop, audience=cast["mcp-server1"].uri, authorization_details=None)
    assert asked.status_code == 200, asked.content
    approval = ApprovalRequest.objects.get()
    assert approval.chain == [cast["agent2"].uri, cast["agent1"].uri]
    decide(cast.user, approval, "approve")
    answer = poll("agent2", asked.json()["auth_req_id"])
    assert answer.status_code == 200, answer.content
    assert "authorization_details" not in answer.json()
    claims = decode(answer.json()["access_token"])[1]
    assert claims["aud"] == cast["mcp-server1"].uri
    assert claims["act"] == {"sub": cast["agent2"].uri, "act": {"sub": cast["agent1"].uri}}
    row = TokenLineage.objects.get(jti=claims["jti"])
    assert row.depth == 2 and row.approval_id == approval.pk
