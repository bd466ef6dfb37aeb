"""demo_live's sensitive hop without its processes: the approval page as the headless user
reads it (the provider's own template), and the summary of agent1's answer."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from django.template.loader import render_to_string
from django.utils import timezone

from delegation_idp.models import ApprovalRequest
from delegation_idp.provider.approvals import describe
from example_project.demo_services.agents import PAYMENT, binding_message
from example_project.demo_services.approval import Approval, pending_request
from example_project.demo_services.management.commands.demo_live import payment_summary

AGENT1, AGENT2 = "https://agent1.example.com", "https://agent2.example.com"
RS = "https://resource-server.example.com"


def page(*messages: str) -> tuple[str, list[str]]:
    """The provider's page as it renders these requests (its own describe(), unsaved rows)."""
    now = timezone.now()
    names = {AGENT2: "Agent 2", AGENT1: "Agent 1", RS: "Resource server"}
    rows = [
        ApprovalRequest(
            id=uuid4(),
            requester=AGENT2,
            chain=[AGENT2, AGENT1],
            audience=[RS],
            scope="tasks.write",
            authorization_details=[{"type": "payment_initiation", "creditorName": "Merchant A"}],
            binding_message=message,
            created_at=now,
            expires_at=now + timedelta(seconds=299),
        )
        for message in messages
    ]
    requests = [describe(row, names, now) for row in rows]
    html = render_to_string("delegation_idp/approvals.html", {"requests": requests})
    return html, [str(row.pk) for row in rows]


def test_the_headless_user_finds_the_request_that_shows_its_binding_message():
    message = binding_message(PAYMENT)
    assert message == "Pay Merchant A 123.50 EUR"
    html, ids = page("Something else", message)
    section, form = pending_request("http://idp.test/o/approvals/", html, message)
    assert form.action == f"http://idp.test/o/approvals/{ids[1]}/"
    assert (
        "Agent 2" in section.text
        and "payment_initiation" in section.text
        and "Something else" not in section.text
    )
    assert pending_request("http://idp.test/o/approvals/", html, "Pay someone else") is None


def test_the_summary_of_a_paid_and_of_a_denied_payment():
    saw = {"sub": "user@example.com", "actors": [AGENT2, AGENT1], "aud": [RS], "jkt": "k2"}
    agent2 = {
        "party": AGENT2,
        "key": "k2",
        "asked": {"binding_message": binding_message(PAYMENT), "expires_in": 300, "interval": 5},
        "sent": {"aud": RS, "jkt": "k2", "authorization_details": [PAYMENT]},
        "downstream": {"saw": saw, "authorization_details": [PAYMENT], "payment": "initiated"},
    }
    body = {"party": AGENT1, "key": "k1", "downstream": agent2}
    shown = Approval(shown="Pay Merchant A", answer="Approved: the request", url="u", approved=True)
    paid = payment_summary(200, body, shown, "http://idp.test/o/approvals/")
    assert paid["outcome"] == "paid" and paid["approved_on_page"] is True and "failure" not in paid
    assert paid["resource_server_saw"]["actors"] == [AGENT2, AGENT1]
    assert paid["authorization_details"] == [PAYMENT]
    denied = {"error": "downstream", "downstream": {"error": "access_denied", "at": AGENT2}}
    refused = payment_summary(502, denied, None, "http://idp.test/o/approvals/")
    assert refused["outcome"] == "access_denied" and "failure" not in refused
    broken = payment_summary(
        502, {"error": "downstream", "downstream": {"error": "invalid_target"}}, None, ""
    )
    assert broken["outcome"] == "invalid_target" and "502" in broken["failure"]
