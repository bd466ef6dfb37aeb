"""The approval page (OpenID CIBA, issue 21 point 3) through Django's test client: what the user
sees of a request, who may decide it, and what each refusal answers (its exact code, and
nothing changed)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from delegation_idp.models import ApprovalRequest, AuditEvent
from delegation_idp.provider.approvals import detail_rows, label
from tests.ciba.conftest import PAYMENT
from tests.helpers import assert_oauth_error, decode, snapshot

pytestmark = pytest.mark.django_db

PAGE = "/o/approvals/"


def url(approval: ApprovalRequest) -> str:
    return f"{PAGE}{approval.pk}/"


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("mallory", "mallory@example.com", "pw-mallory-123")


def page_as(client: Any, user: Any) -> Any:
    client.force_login(user)
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["X-Frame-Options"] == "DENY"
    return response


def text(response: Any) -> str:
    """The page's text, tags removed and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def decisions(**filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event="approval_decision", **filters))


def assert_refused(response: Any, status: int, reason: str) -> None:
    assert response.status_code == status, response.content
    assert response["Cache-Control"] == "no-store"
    assert f'data-reason="{reason}"' in response.content.decode()


def unchanged(approval: ApprovalRequest, status: str = ApprovalRequest.PENDING) -> None:
    stored = ApprovalRequest.objects.get(pk=approval.pk)
    assert stored.status == status
    if status == ApprovalRequest.PENDING:
        assert stored.decided_at is None and stored.decided_by is None


def test_the_owner_sees_the_request_with_everything_it_asks(client: Any, asked: Any, cast: Any) -> None:
    body, approval = asked
    response = page_as(client, cast.user)
    html = response.content.decode()
    shown = text(response)
    assert f'id="approval-{approval.pk}"' in html
    # The chain by name and URI, the requesting agent labelled; then the user.
    assert "Agent 1 (orchestrator) asks to act for you" in shown
    assert "asking now Agent 1 (orchestrator) https://agent1.example.com" in shown
    # The audience by name and URI, the scope, the binding message.
    assert "Agent 2 https://agent2.example.com" in shown
    for scope in approval.scope.split():
        assert f"<code>{scope}</code>" in html
    assert "Pay Merchant A 123.50 EUR" in shown
    # authorization_details as readable rows: the type, the common field, the nested amount.
    assert "Type: payment_initiation" in shown
    assert "Actions initiate" in shown
    assert "Instructed amount 123.50 EUR" in shown
    assert "Creditor name Merchant A" in shown
    # The time left, in seconds and as a time.
    seconds = int(re.search(r'class="approval-seconds">(\d+)<', html).group(1))
    assert 0 < seconds <= 300
    assert f'datetime="{approval.expires_at.isoformat()}"' in html
    # The two decisions, POSTed with the CSRF token, to this request's address.
    assert f'action="{url(approval)}"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'value="approve"' in html and 'value="deny"' in html
    # Never the auth_req_id, nor the subject token.
    assert body["auth_req_id"] not in html and approval.auth_req_id_hash not in html


def test_the_newest_request_comes_first_and_a_longer_chain_newest_agent_first(
    client: Any, asked: Any, cast: Any
) -> None:
    _body, first = asked
    later = ApprovalRequest.objects.get(pk=first.pk)
    later.id, later.auth_req_id_hash = uuid.uuid4(), "0" * 64
    later.chain = [cast["mcp-server1"].uri, cast["agent2"].uri, cast["agent1"].uri]
    later.created_at = first.created_at + timedelta(seconds=1)
    later.save(force_insert=True)
    html = page_as(client, cast.user).content.decode()
    assert html.index(f'id="approval-{later.pk}"') < html.index(f'id="approval-{first.pk}"')
    section = html[html.index(f'id="approval-{later.pk}"') : html.index(f'id="approval-{first.pk}"')]
    assert "MCP server 1 asks to act for you" in " ".join(section.split())
    section = section[section.index('class="approval-chain"') :]
    names = [section.index(n) for n in ("MCP server 1", "Agent 2", "Agent 1 (orchestrator)")]
    assert names == sorted(names)
    assert section.count("asking now") == 1
    assert section.index("asking now") < section.index("MCP server 1")


def test_another_user_sees_nothing_and_cannot_decide(
    client: Any, asked: Any, cast: Any, other_user: Any, poll: Any
) -> None:
    body, approval = asked
    shown = page_as(client, other_user)
    assert str(approval.pk) not in shown.content.decode()
    assert 'id="approvals-none"' in shown.content.decode()
    before = snapshot()
    for decision in ("approve", "deny"):
        response = client.post(url(approval), {"decision": decision})
        assert_refused(response, 404, "approval_not_found")
    unchanged(approval)
    assert snapshot() == before
    refused = decisions(reason="approval_not_found")
    assert len(refused) == 2
    assert all(r.decision == "denied" and r.user_id == str(other_user.pk) for r in refused)
    # Nothing of the request leaks into the audit record of another user's attempt.
    assert all(r.chain == [] and r.subject == "" for r in refused)
    # The agent is still told to wait.
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "authorization_pending")


def test_the_page_is_never_framed_even_without_the_sites_middleware(
    client: Any, asked: Any, cast: Any, settings: Any
) -> None:
    _body, approval = asked
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "clickjacking" not in m]
    assert page_as(client, cast.user)["X-Frame-Options"] == "DENY"
    assert client.post(url(approval), {"decision": "deny"})["X-Frame-Options"] == "DENY"


def test_a_request_that_does_not_exist_is_not_found(client: Any, cast: Any) -> None:
    client.force_login(cast.user)
    response = client.post(f"{PAGE}00000000-0000-0000-0000-000000000000/", {"decision": "approve"})
    assert_refused(response, 404, "approval_not_found")
    assert client.post(f"{PAGE}not-a-uuid/", {"decision": "approve"}).status_code == 404


def test_a_decision_without_the_csrf_token_is_refused_and_changes_nothing(asked: Any, cast: Any) -> None:
    _body, approval = asked
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast.user)
    before = snapshot()
    response = browser.post(url(approval), {"decision": "approve"})
    assert response.status_code == 403
    assert b"CSRF" in response.content
    unchanged(approval)
    assert snapshot() == before
    assert decisions() == []
    # With the token the page gives, the same browser decides.
    page = browser.get(PAGE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = browser.post(url(approval), {"decision": "approve", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    unchanged(approval, ApprovalRequest.APPROVED)


def test_deciding_twice_is_refused_as_already_decided(client: Any, asked: Any, cast: Any) -> None:
    _body, approval = asked
    client.force_login(cast.user)
    assert client.post(url(approval), {"decision": "deny"}).status_code == 302
    for decision in ("approve", "deny"):
        response = client.post(url(approval), {"decision": decision})
        assert_refused(response, 409, "approval_already_decided")
        assert 'data-state="denied"' in response.content.decode()
    unchanged(approval, ApprovalRequest.DENIED)
    refused = decisions(reason="approval_already_decided")
    assert len(refused) == 2 and all(r.decision == "denied" for r in refused)
    assert refused[0].chain == [cast["agent1"].uri]


def test_an_expired_request_is_not_listed_and_cannot_be_approved(
    client: Any, asked: Any, cast: Any, poll: Any
) -> None:
    body, approval = asked
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    page = page_as(client, cast.user).content.decode()
    assert str(approval.pk) not in page
    before = snapshot()
    response = client.post(url(approval), {"decision": "approve"})
    assert_refused(response, 409, "approval_already_decided")
    assert 'data-state="expired"' in response.content.decode()
    unchanged(approval)
    assert snapshot() == before
    assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "expired_token")
    assert snapshot() == before


def test_an_anonymous_user_is_sent_to_sign_in(client: Any, asked: Any) -> None:
    _body, approval = asked
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={PAGE}"
    response = client.post(url(approval), {"decision": "approve"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    unchanged(approval)
    assert decisions() == []


def test_a_get_of_a_decision_address_is_not_allowed(client: Any, asked: Any, cast: Any) -> None:
    _body, approval = asked
    client.force_login(cast.user)
    assert client.get(url(approval)).status_code == 405
    unchanged(approval)


@pytest.mark.parametrize("form", [{"decision": "yes"}, {"decision": ""}, {}, {"decision": "APPROVE"}])
def test_a_decision_that_is_neither_approve_nor_deny_is_refused(
    client: Any, asked: Any, cast: Any, form: dict[str, str]
) -> None:
    _body, approval = asked
    client.force_login(cast.user)
    response = client.post(url(approval), form)
    assert_refused(response, 400, "invalid_request")
    unchanged(approval)
    assert [r.reason for r in decisions()] == ["invalid_request"]


def test_approve_then_the_poll_gets_the_token(client: Any, asked: Any, cast: Any, poll: Any) -> None:
    body, approval = asked
    client.force_login(cast.user)
    response = client.post(url(approval), {"decision": "approve"})
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}?decided={approval.pk}"
    assert response["Cache-Control"] == "no-store"
    granted = decisions(decision="granted")
    assert len(granted) == 1 and granted[0].approved_by == str(cast.user.pk)
    assert granted[0].chain == [cast["agent1"].uri]
    # The note after the decision; the request is no longer listed.
    page = text(client.get(response["Location"]))
    assert "Approved: the request of Agent 1 (orchestrator) toward Agent 2" in page
    assert "Nothing waits for your approval." in page
    client.logout()
    answer = poll("agent1", body["auth_req_id"])
    assert answer.status_code == 200, answer.content
    token = answer.json()
    assert token["authorization_details"] == [PAYMENT]
    assert decode(token["access_token"])[1]["act"] == {"sub": cast["agent1"].uri}
    unchanged(approval, ApprovalRequest.ISSUED)


def test_deny_then_the_poll_gets_access_denied(client: Any, asked: Any, cast: Any, poll: Any) -> None:
    body, approval = asked
    client.force_login(cast.user)
    response = client.post(url(approval), {"decision": "deny"})
    assert response.status_code == 302
    denied = decisions(reason="approval_denied")
    assert len(denied) == 1 and denied[0].decision == "denied"
    page = text(client.get(response["Location"]))
    assert "Denied: the request of Agent 1 (orchestrator)" in page
    before = snapshot()
    client.logout()
    refused = assert_oauth_error(poll("agent1", body["auth_req_id"]), 400, "access_denied")
    assert "denied" in refused["error_description"]
    assert snapshot() == before
    assert AuditEvent.objects.filter(event="backchannel_token", reason="approval_denied").count() == 1
    unchanged(approval, ApprovalRequest.DENIED)


def test_the_note_shows_only_a_decision_of_this_user(
    client: Any, asked: Any, cast: Any, other_user: Any, decide: Any
) -> None:
    _body, approval = asked
    decide(cast.user, approval, "approve")
    client.force_login(other_user)
    assert 'id="approval-decided"' not in client.get(f"{PAGE}?decided={approval.pk}").content.decode()
    assert client.get(f"{PAGE}?decided=<script>").status_code == 200


def test_authorization_details_as_readable_rows() -> None:
    detail = {
        "type": "customer_information",
        "creditorAccount": {"iban": "DE02100100109307118603", "bic": "PBNKDEFF"},
        "privileges": ["read"],
        "locations": ["https://example.com/customers"],
        "actions": ["read", "write"],
        "datatypes": ["contacts", "photos"],
        "identifier": "account-14-32-32-3",
        "signed": True,
        "payees": [{"name": "A", "IBAN": "X"}, "plain"],
    }
    shown = detail_rows(detail)
    assert shown["type"] == "customer_information"
    keys = [row["key"] for row in shown["rows"]]
    assert keys[:5] == ["locations", "actions", "datatypes", "identifier", "privileges"]
    rows = {row["key"]: row for row in shown["rows"]}
    assert rows["datatypes"]["label"] == "Data types" and rows["actions"]["text"] == "read, write"
    assert [r["label"] for r in rows["creditorAccount"]["rows"]] == ["Iban", "Bic"]
    assert rows["signed"]["text"] == "yes"
    assert rows["payees"]["groups"][0][1]["label"] == "IBAN"
    assert rows["payees"]["groups"][1][0]["text"] == "plain"
    assert label("instructedAmount") == "Instructed amount" and label("creditor_name") == "Creditor name"


def test_markup_in_a_request_is_shown_as_text(client: Any, asked: Any, cast: Any) -> None:
    _body, approval = asked
    ApprovalRequest.objects.filter(pk=approval.pk).update(
        binding_message="<b>hi</b>", authorization_details=[{**PAYMENT, "creditorName": "<script>x</script>"}]
    )
    html = page_as(client, cast.user).content.decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<b>hi</b>" not in html
    assert json.dumps(PAYMENT) not in html
