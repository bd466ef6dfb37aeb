"""The append-only audit trail, the signals and the JSON-lines export."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from delegation_idp import signals
from delegation_idp.lineage import revocation
from delegation_idp.models import AuditEvent
from tests.helpers import decode


def test_every_exchange_attempt_leaves_one_event(cast, chain, exchange):
    before = AuditEvent.objects.count()
    refused = exchange("agent2", chain[0], cast["mcp-server1"].uri)  # not addressed to agent2
    assert refused.status_code == 400
    granted = exchange("agent1", chain[0], cast["agent2"].uri, scope="tasks.read")
    assert granted.status_code == 200
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.decision for e in events] == ["denied", "granted"]
    denied, ok = events
    assert denied.event == "token_exchange" and denied.reason == "subject_wrong_audience"
    assert denied.error == "invalid_request" and denied.jti == ""
    assert denied.client_id == cast["agent2"].client_id
    assert denied.requested_audience == [cast["mcp-server1"].uri]
    claims = decode(granted.json()["access_token"])[1]
    assert ok.jti == claims["jti"] and ok.parent_jti == decode(chain[0])[1]["jti"]
    assert ok.requested_scope == "tasks.read" and ok.granted_scope == "tasks.read"
    assert ok.requested_audience == ok.granted_audience == [cast["agent2"].uri]
    assert ok.chain == [cast["agent1"].uri]
    assert ok.subject == "user@example.com" and ok.user_id == str(cast.user.pk)
    assert ok.client_ip == "127.0.0.1"


def test_no_token_ever_reaches_the_audit_trail(chain):
    dumped = json.dumps(list(AuditEvent.objects.values()), default=str)
    for token in chain:
        assert token not in dumped
        assert token.split(".")[2] not in dumped


def test_events_are_append_only(chain):
    event = AuditEvent.objects.first()
    event.reason = "tampered"
    with pytest.raises(ValidationError):
        event.save()


def test_a_revocation_leaves_one_event(cast, chain, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        revoked = revocation.revoke_subtree(decode(chain[1])[1]["jti"], reason="revoked")
    assert len(revoked) == 3
    event = AuditEvent.objects.get(event="revocation")
    assert event.decision == "revoked" and event.reason == "revoked"
    assert event.jti == decode(chain[1])[1]["jti"]
    assert event.user_id == str(cast.user.pk)
    assert event.granted_audience == [cast["agent2"].uri]


def test_signals_fire_with_their_arguments(cast, user_token, exchange, django_capture_on_commit_callbacks):
    seen: dict[str, list[dict[str, Any]]] = {"exchanged": [], "denied": [], "revoked": []}

    def on(kind: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            seen[kind].append(kwargs)

        return receiver

    receivers = [on("exchanged"), on("denied"), on("revoked")]
    signals.token_exchanged.connect(receivers[0])
    signals.exchange_denied.connect(receivers[1])
    signals.token_revoked.connect(receivers[2])
    try:
        token = exchange("agent1", user_token, cast["agent2"].uri).json()["access_token"]
        exchange("agent1", user_token, "https://unknown.example.com")
        with django_capture_on_commit_callbacks(execute=True):
            revocation.revoke_subtree(decode(user_token)[1]["jti"])
    finally:
        signals.token_exchanged.disconnect(receivers[0])
        signals.exchange_denied.disconnect(receivers[1])
        signals.token_revoked.disconnect(receivers[2])
    [exchanged] = seen["exchanged"]
    assert exchanged["jti"] == decode(token)[1]["jti"]
    assert exchanged["parent_jti"] == decode(user_token)[1]["jti"]
    assert exchanged["claims"]["act"] == {"sub": cast["agent1"].uri}
    [denied] = seen["denied"]
    assert denied["error"] == "invalid_target" and denied["client_id"] == cast["agent1"].client_id
    [revoked] = seen["revoked"]
    assert set(revoked["jtis"]) == {decode(user_token)[1]["jti"], decode(token)[1]["jti"]}
    assert revoked["reason"] == "revoked"


def test_a_failing_revocation_receiver_does_not_undo_or_raise(chain, django_capture_on_commit_callbacks):
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("integrator bug")

    signals.token_revoked.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            revoked = revocation.revoke_subtree(decode(chain[0])[1]["jti"])
    finally:
        signals.token_revoked.disconnect(broken)
    assert len(revoked) == 4


def _export(**options: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    call_command("export_audit", stdout=out, **options)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_export_writes_every_event_as_json_lines_oldest_first(cast, chain, exchange):
    exchange("agent1", chain[0], "https://unknown.example.com")
    rows = _export(batch_size=2)
    assert len(rows) == AuditEvent.objects.count()
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    last = rows[-1]
    assert last["decision"] == "denied" and last["error"] == "invalid_target"
    assert last["created"].endswith("Z")
    assert set(last) >= {"chain", "requested_audience", "granted_audience", "jti", "parent_jti", "client_ip"}


def test_export_filters(cast, chain, exchange, tmp_path):
    exchange("agent1", chain[0], "https://unknown.example.com")
    denied = _export(decision="denied")
    assert denied and all(r["decision"] == "denied" for r in denied)
    mine = _export(client_id=cast["agent2"].client_id)
    assert mine and all(r["client_id"] == cast["agent2"].client_id for r in mine)
    assert _export(user_id=str(cast.user.pk), event="token_exchange")
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert _export(since=future) == []
    assert len(_export(until=future)) == AuditEvent.objects.count()
    assert _export(since="2000-01-01") == _export()
    path = tmp_path / "audit.jsonl"
    call_command("export_audit", output=str(path), stderr=io.StringIO())
    assert len(path.read_text().splitlines()) == AuditEvent.objects.count()


def test_export_rejects_a_bad_date(db):
    with pytest.raises(CommandError):
        call_command("export_audit", since="yesterday")


# -- a granted exchange's record commits with its token -------------------------------


def test_a_granted_exchange_is_audited_inside_its_issuance_transaction(cast, chain, exchange, monkeypatch):
    """If the issuing transaction fails after the audit row was written, both roll back:
    no token, no lineage, no 'granted' record; the refusal is recorded instead."""
    from django.db import DatabaseError

    from delegation_idp import audit
    from tests.helpers import assert_oauth_error, snapshot

    written = []
    original = audit.write_issued

    def write_then_fail(*args: Any) -> None:
        original(*args)
        written.append(AuditEvent.objects.filter(decision="granted").count())
        raise DatabaseError("the commit would have failed here")

    monkeypatch.setattr(audit, "write_issued", write_then_fail)
    before, events = snapshot(), AuditEvent.objects.count()
    response = exchange("agent1", chain[0], cast["agent2"].uri)
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert snapshot() == before
    assert written and written[0] >= 1  # the row existed inside the transaction ...
    new = list(AuditEvent.objects.order_by("id")[events:])
    assert [(e.decision, e.error, e.reason) for e in new] == [
        ("denied", "temporarily_unavailable", "database_error")
    ]  # ... and only the refusal survived


def test_an_audit_row_that_cannot_be_written_refuses_the_exchange(cast, chain, exchange, monkeypatch):
    """No exchanged token without its audit record: if the row cannot be stored, no token."""
    from delegation_idp import audit
    from tests.helpers import assert_oauth_error, snapshot

    original = audit.sql.insert
    recorded: list[dict[str, Any]] = []

    def refuses_grants(model: Any, fields: Any, using: str) -> Any:
        if model is AuditEvent and fields["decision"] == "granted":
            raise OSError("audit table unwritable")
        if model is AuditEvent:
            recorded.append(dict(fields))
        return original(model, fields, using)

    monkeypatch.setattr(audit.sql, "insert", refuses_grants)
    before = snapshot()
    response = exchange("agent1", chain[0], cast["agent2"].uri)
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response["Retry-After"] == "1"
    assert snapshot() == before
    assert [(r["decision"], r["reason"]) for r in recorded] == [("denied", "audit_unavailable")]


def test_a_sink_outside_the_database_is_written_after_the_transaction(cast, chain, exchange, settings):
    """A custom AUDIT_WRITER cannot roll back with the token: it gets the record after the
    transaction, like every other request, and its failure never changes the answer."""
    recorded: list[dict[str, Any]] = []

    def sink(**fields: Any) -> None:
        recorded.append(fields)
        raise OSError("log shipper down")

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "AUDIT_WRITER": sink}
    response = exchange("agent1", chain[0], cast["agent2"].uri)
    assert response.status_code == 200, response.content
    assert [(r["event"], r["decision"]) for r in recorded] == [("token_exchange", "granted")]
    assert recorded[0]["jti"] == decode(response.json()["access_token"])[1]["jti"]


def test_other_grants_leave_one_record(cast, clients, token_endpoint):
    """Client credentials and the other stock grants: one record per request."""
    before = AuditEvent.objects.count()
    response = token_endpoint({"grant_type": "client_credentials"}, clients["plain-client"])
    assert response.status_code == 200, response.content
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [(e.event, e.decision, e.grant_type) for e in events] == [
        ("token", "granted", "client_credentials")
    ]


# -- a granted client-credentials grant's record commits with its token --------------


def test_client_credentials_are_audited_inside_the_issuing_transaction(
    cast, clients, token_endpoint, monkeypatch
):
    """django-oauth-toolkit's client-credentials grant writes its granted record in the
    transaction that stores the token: if that transaction fails after the row was written,
    both roll back, and the refusal is recorded instead."""
    from django.db import DatabaseError
    from oauth2_provider.models import AccessToken

    from delegation_idp import audit
    from tests.helpers import assert_oauth_error

    written = []
    original = audit.write_issued

    def write_then_fail(*args: Any) -> None:
        original(*args)
        written.append(AuditEvent.objects.filter(decision="granted", grant_type="client_credentials").count())
        raise DatabaseError("the commit would have failed here")

    monkeypatch.setattr(audit, "write_issued", write_then_fail)
    tokens, events = AccessToken.objects.count(), AuditEvent.objects.count()
    response = token_endpoint({"grant_type": "client_credentials"}, clients["plain-client"])
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert written == [1]  # the row existed inside the transaction ...
    assert AccessToken.objects.count() == tokens
    new = list(AuditEvent.objects.order_by("id")[events:])
    assert [(e.decision, e.error, e.reason, e.grant_type) for e in new] == [
        ("denied", "temporarily_unavailable", "database_error", "client_credentials")
    ]  # ... and only the refusal survived


def test_client_credentials_without_their_audit_record_get_no_token(
    cast, clients, token_endpoint, monkeypatch
):
    """No client-credentials token without its record: a granted row that cannot be
    stored refuses the token (503, audit_unavailable), which rolls back with it."""
    from oauth2_provider.models import AccessToken

    from delegation_idp import audit
    from tests.helpers import assert_oauth_error

    original = audit.sql.insert
    recorded: list[dict[str, Any]] = []

    def refuses_grants(model: Any, fields: Any, using: str) -> Any:
        if model is AuditEvent and fields["decision"] == "granted":
            raise OSError("audit table unwritable")
        if model is AuditEvent:
            recorded.append(dict(fields))
        return original(model, fields, using)

    monkeypatch.setattr(audit.sql, "insert", refuses_grants)
    tokens = AccessToken.objects.count()
    response = token_endpoint({"grant_type": "client_credentials"}, clients["plain-client"])
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response["Retry-After"] == "1"
    assert AccessToken.objects.count() == tokens
    assert [(r["decision"], r["reason"]) for r in recorded] == [("denied", "audit_unavailable")]


def test_a_sink_outside_the_database_gets_client_credentials_after_the_transaction(
    cast, clients, token_endpoint, settings
):
    """A custom AUDIT_WRITER gets a client-credentials record after the transaction, and its
    failure never changes the answer."""
    recorded: list[dict[str, Any]] = []

    def sink(**fields: Any) -> None:
        recorded.append(fields)
        raise OSError("log shipper down")

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "AUDIT_WRITER": sink}
    response = token_endpoint({"grant_type": "client_credentials"}, clients["plain-client"])
    assert response.status_code == 200, response.content
    assert [(r["event"], r["decision"], r["grant_type"]) for r in recorded] == [
        ("token", "granted", "client_credentials")
    ]
