"""Fixtures for the user in the loop (OpenID CIBA): a rule that needs the user's approval for
agent1's hop to agent2, the backchannel authentication request, the poll and the page."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from delegation_idp.ciba import GRANT_TYPE
from delegation_idp.models import ApprovalRequest, DelegationRule, Party
from tests.conftest import ACCESS_TOKEN_TYPE

PAYMENT = {
    "type": "payment_initiation",
    "actions": ["initiate"],
    "instructedAmount": {"currency": "EUR", "amount": "123.50"},
    "creditorName": "Merchant A",
}


@pytest.fixture
def approval_rule(cast: Any) -> DelegationRule:
    """agent1's seeded rule toward agent2 now needs the user's approval, every time."""
    rule = DelegationRule.objects.get(actor__uri=cast["agent1"].uri, audiences__uri=cast["agent2"].uri)
    rule.approval = DelegationRule.APPROVAL_ALWAYS
    rule.save()
    return rule


@pytest.fixture
def backchannel(client: Any, cast: Any):
    """POST a backchannel authentication request as the named agent; ``None`` drops a
    parameter, ``HTTP_*`` keywords are headers."""

    def post(agent: str, subject_token: str, /, **params: Any) -> Any:
        headers = {k: params.pop(k) for k in [k for k in params if k.startswith("HTTP_")]}
        form: dict[str, Any] = {
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": cast["agent2"].uri,
            "binding_message": "Pay Merchant A 123.50 EUR",
            "authorization_details": json.dumps([PAYMENT]),
        }
        form.update(params)
        form = {k: v for k, v in form.items() if v is not None}
        headers.setdefault("HTTP_AUTHORIZATION", cast[agent].basic)
        return client.post(
            "/o/bc-authorize/",
            urlencode(form, doseq=True),
            content_type="application/x-www-form-urlencoded",
            **headers,
        )

    return post


@pytest.fixture
def poll(token_endpoint: Any, cast: Any):
    """The CIBA token request for ``auth_req_id`` as the named agent."""

    def post(agent: str, auth_req_id: str, **extra: Any) -> Any:
        return token_endpoint({"grant_type": GRANT_TYPE, "auth_req_id": auth_req_id}, cast[agent], **extra)

    return post


@pytest.fixture
def decide(client: Any):
    """The user's decision on the approval page, as ``user`` (signed in for it)."""

    def post(user: Any, approval: ApprovalRequest, decision: str) -> Any:
        client.force_login(user)
        try:
            return client.post(f"/o/approvals/{approval.pk}/", {"decision": decision})
        finally:
            client.logout()

    return post


@pytest.fixture
def asked(backchannel: Any, user_token: str, approval_rule: Any):
    """agent1 asked for the hop to agent2: (the response body, the stored request)."""
    response = backchannel("agent1", user_token)
    assert response.status_code == 200, response.content
    body = response.json()
    return body, ApprovalRequest.objects.get()


def party(uri: str) -> Party:
    return Party.objects.get(uri=uri)
