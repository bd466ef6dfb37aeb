"""How a user hears of a request (issue 21 point 3): the ``approval_requested`` signal with the
page's URL, the optional email through Django's email backend (never a token in it), and
``approval_decided`` on the decision."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import override_settings

from delegation_idp import signals
from delegation_idp.models import ApprovalRequest
from tests.helpers import with_idp

pytestmark = pytest.mark.django_db

SENDER = "idp@example.com"
PAGE_URL = "http://testserver/o/approvals/"


class FailingBackend(BaseEmailBackend):
    """An email backend whose server is down."""

    def send_messages(self, email_messages: Any) -> int:
        raise ConnectionRefusedError("smtp down")


@pytest.fixture
def heard() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """What ``approval_requested`` and ``approval_decided`` were sent with."""
    sent: dict[str, list[dict[str, Any]]] = {"requested": [], "decided": []}

    def requested(sender: Any, **kwargs: Any) -> None:
        sent["requested"].append({"sender": sender, **kwargs})

    def decided(sender: Any, **kwargs: Any) -> None:
        sent["decided"].append({"sender": sender, **kwargs})

    signals.approval_requested.connect(requested, dispatch_uid="test_notify_requested")
    signals.approval_decided.connect(decided, dispatch_uid="test_notify_decided")
    try:
        yield sent
    finally:
        signals.approval_requested.disconnect(dispatch_uid="test_notify_requested")
        signals.approval_decided.disconnect(dispatch_uid="test_notify_decided")


def ask(backchannel: Any, user_token: str) -> tuple[dict[str, Any], ApprovalRequest]:
    response = backchannel("agent1", user_token)
    assert response.status_code == 200, response.content
    return response.json(), ApprovalRequest.objects.get()


def test_approval_requested_is_sent_with_the_approval_and_the_page_url(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any, cast: Any
) -> None:
    _body, approval = ask(backchannel, user_token)
    assert len(heard["requested"]) == 1
    sent = heard["requested"][0]
    assert sent["sender"] is ApprovalRequest
    assert sent["approval"].pk == approval.pk and sent["approval"].user == cast.user
    assert sent["url"] == PAGE_URL
    assert heard["decided"] == []


def test_approval_url_overrides_the_page_url(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any
) -> None:
    with with_idp(APPROVAL_URL="https://id.example.com/my/approvals"):
        ask(backchannel, user_token)
    assert heard["requested"][0]["url"] == "https://id.example.com/my/approvals"


def test_with_a_sender_one_email_goes_to_the_user_with_the_url_and_the_message_and_no_token(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any, cast: Any
) -> None:
    with with_idp(APPROVAL_EMAIL_FROM=SENDER):
        body, approval = ask(backchannel, user_token)
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == [cast.user.email] and email.from_email == SENDER
    assert PAGE_URL in email.body
    assert "Pay Merchant A 123.50 EUR" in email.body
    everything = "\n".join([email.subject, email.body, *(str(v) for v in email.extra_headers.values())])
    for secret in (body["auth_req_id"], user_token, approval.auth_req_id_hash, approval.subject_jti):
        assert secret not in everything
    assert "eyJ" not in everything  # no JWT of any kind
    assert len(heard["requested"]) == 1  # the signal too


def test_without_a_sender_no_email(backchannel: Any, user_token: str, approval_rule: Any) -> None:
    ask(backchannel, user_token)
    assert mail.outbox == []


def test_a_user_without_an_address_gets_no_email_and_the_signal(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any, cast: Any
) -> None:
    type(cast.user).objects.filter(pk=cast.user.pk).update(email="")
    with with_idp(APPROVAL_EMAIL_FROM=SENDER):
        ask(backchannel, user_token)
    assert mail.outbox == [] and len(heard["requested"]) == 1


def test_a_failing_email_backend_does_not_fail_the_request(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any, caplog: Any
) -> None:
    with (
        with_idp(APPROVAL_EMAIL_FROM=SENDER),
        override_settings(EMAIL_BACKEND="tests.ciba.test_notify.FailingBackend"),
    ):
        body, approval = ask(backchannel, user_token)
    assert set(body) == {"auth_req_id", "expires_in", "interval"}
    assert approval.status == ApprovalRequest.PENDING
    assert len(heard["requested"]) == 1
    assert "approval email could not be sent" in caplog.text
    assert body["auth_req_id"] not in caplog.text


def test_approval_decided_is_sent_on_each_decision(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any, decide: Any, cast: Any
) -> None:
    _body, approval = ask(backchannel, user_token)
    assert decide(cast.user, approval, "approve").status_code == 302
    assert len(heard["decided"]) == 1
    sent = heard["decided"][0]
    assert sent["sender"] is ApprovalRequest and sent["approved"] is True and sent["by"] == cast.user
    assert sent["approval"].pk == approval.pk and sent["approval"].status == ApprovalRequest.APPROVED
    # A refused decision (the second one) sends nothing.
    assert decide(cast.user, approval, "deny").status_code == 409
    assert len(heard["decided"]) == 1


def test_approval_decided_on_a_denial(
    heard: Any, backchannel: Any, user_token: str, approval_rule: Any, decide: Any, cast: Any
) -> None:
    _body, approval = ask(backchannel, user_token)
    decide(cast.user, approval, "deny")
    assert [(d["approved"], d["approval"].status) for d in heard["decided"]] == [
        (False, ApprovalRequest.DENIED)
    ]
