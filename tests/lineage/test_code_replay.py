"""A replayed authorization code: refused, and everything its first redemption issued
(the access token, the tokens exchanged from it, its refresh token) revoked
(RFC 6749 sections 4.1.2 and 10.5)."""

from __future__ import annotations

import contextvars
import hashlib
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from oauth2_provider.models import get_refresh_token_model

from delegation_idp.lineage import retention
from delegation_idp.models import AuditEvent, TokenLineage
from delegation_idp.provider.validators import DelegationValidator
from tests.conftest import authorize_code, code_form
from tests.helpers import assert_oauth_error, decode


@pytest.fixture
def redeemed(cast, client, token_endpoint):
    """An authorization code redeemed once: (code, verifier, token response body)."""
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    response = token_endpoint(code_form(agent, code, verifier), agent)
    assert response.status_code == 200, response.content
    return code, verifier, response.json()


def replay(cast, token_endpoint, code, verifier):
    agent = cast["agent1"]
    return token_endpoint(code_form(agent, code, verifier), agent)


@pytest.mark.rfc("6749-4.1.2")
@pytest.mark.rfc("6749-10.5")
def test_a_replayed_code_revokes_what_its_first_use_issued(
    cast, redeemed, token_endpoint, exchange, is_active
):
    code, verifier, first = redeemed
    token = first["access_token"]
    child = exchange("agent1", token, cast["agent2"].uri)
    assert child.status_code == 200, child.content
    grandchild = exchange("agent2", child.json()["access_token"], cast["mcp-server1"].uri)
    assert grandchild.status_code == 200, grandchild.content
    descendants = [child.json()["access_token"], grandchild.json()["access_token"]]
    assert is_active(token) and all(is_active(t) for t in descendants)

    body = assert_oauth_error(replay(cast, token_endpoint, code, verifier), 400, "invalid_grant")
    assert "access_token" not in body

    assert not is_active(token)
    assert not any(is_active(t) for t in descendants)
    assert_oauth_error(exchange("agent1", token, cast["agent2"].uri), 400, "invalid_request")
    refreshed = token_endpoint(
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, cast["agent1"]
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")
    row = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
    assert row.revocation_reason == "code_replayed"
    assert not get_refresh_token_model().objects.filter(revoked__isnull=True, user=cast.user).exists()


@pytest.mark.rfc("6749-10.5")
def test_the_replay_is_audited_with_its_own_reason(
    cast, redeemed, token_endpoint, django_capture_on_commit_callbacks
):
    code, verifier, first = redeemed
    before = AuditEvent.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        replay(cast, token_endpoint, code, verifier)
    events = list(AuditEvent.objects.order_by("id")[before:])
    refusal = [e for e in events if e.event == "token"]
    assert [(e.decision, e.error, e.reason) for e in refusal] == [
        ("denied", "invalid_grant", "code_replayed")
    ]
    revocation = [e for e in events if e.event == "revocation"]
    assert [(e.reason, e.jti) for e in revocation] == [
        ("code_replayed", decode(first["access_token"])[1]["jti"])
    ]


def test_only_a_hash_of_the_code_is_stored(cast, redeemed):
    code, _verifier, first = redeemed
    row = TokenLineage.objects.get(jti=decode(first["access_token"])[1]["jti"])
    assert row.code_hash == hashlib.sha256(code.encode()).hexdigest()
    for value in TokenLineage.objects.values_list(flat=False):
        assert code not in [str(v) for v in value]


def test_a_wrong_code_revokes_nothing(cast, redeemed, token_endpoint, is_active):
    _code, verifier, first = redeemed
    assert_oauth_error(replay(cast, token_endpoint, "never-issued", verifier), 400, "invalid_grant")
    assert is_active(first["access_token"])
    event = AuditEvent.objects.filter(event="token").order_by("-id").first()
    assert event.reason != "code_replayed"


def test_code_hashes_are_swept_with_their_lineage(cast, redeemed):
    _code, _verifier, first = redeemed
    jti = decode(first["access_token"])[1]["jti"]
    assert TokenLineage.objects.filter(jti=jti).exclude(code_hash=None).exists()
    later = timezone.now() + timedelta(days=400)
    retention.sweep_expired(now=later)
    assert not TokenLineage.objects.exclude(code_hash=None).exists()


def test_the_successful_redemption_looks_nothing_up(
    cast, client, token_endpoint, django_assert_max_num_queries
):
    """Recording the hash rides on the lineage row's INSERT: the redemption makes as many
    queries as without replay detection (the replay look-up runs on refusal only)."""
    from django.test.utils import CaptureQueriesContext

    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    with CaptureQueriesContext(connection) as queries:
        response = token_endpoint(code_form(agent, code, verifier), agent)
    assert response.status_code == 200
    lookups = [
        q["sql"]
        for q in queries
        if "code_hash" in q["sql"] and not q["sql"].lstrip().upper().startswith("INSERT")
    ]
    assert lookups == []


# -- concurrency -----------------------------------------------------------------


def _view_redemption(agent: Any, code: str, verifier: str) -> Any:
    """One redemption through the token view itself, in a fresh context (its own audit record)."""
    from urllib.parse import urlencode

    from django.test import RequestFactory

    from delegation_idp.provider.views import TokenView

    request = RequestFactory().post(
        "/o/token/",
        urlencode(code_form(agent, code, verifier)),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=agent.basic,
    )
    return contextvars.Context().run(TokenView.as_view(), request)


@pytest.mark.rfc("6749-10.5")
@pytest.mark.parametrize("moment", ["after the code check", "before the tokens are stored"])
def test_a_redemption_that_loses_the_race_issues_nothing_and_revokes_the_winner(
    cast, client, token_endpoint, monkeypatch, is_active, moment
):
    """Both requests find the code valid; the first to consume it wins, the other is a
    replay: it issues nothing and the winner's token is revoked. The interleaving is forced
    in one connection, so this runs on every database."""
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    name = "validate_code" if moment == "after the code check" else "save_bearer_token"
    original = getattr(DelegationValidator, name)
    winner: list[Any] = []

    def lose(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not winner:
            winner.append(None)
            if name == "validate_code":
                result = original(self, *args, **kwargs)
                winner[0] = _view_redemption(agent, code, verifier)  # runs to its end first
                return result
            winner[0] = _view_redemption(agent, code, verifier)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DelegationValidator, name, lose)
    loser = token_endpoint(code_form(agent, code, verifier), agent)
    assert winner[0].status_code == 200, winner[0].content
    assert_oauth_error(loser, 400, "invalid_grant")
    won = json.loads(winner[0].content)["access_token"]
    assert not is_active(won)
    assert TokenLineage.objects.count() == 1  # the loser's token rolled back
    assert TokenLineage.objects.get().revocation_reason == "code_replayed"
    assert not get_refresh_token_model().objects.filter(revoked__isnull=True).exists()
    event = AuditEvent.objects.filter(event="token").order_by("-id").first()
    assert (event.error, event.reason) == ("invalid_grant", "code_replayed")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.rfc("6749-10.5")
def test_simultaneous_redemptions_leave_at_most_one_token(cast, client, monkeypatch):
    """Real concurrent requests (threads, one connection each) that all pass the code
    check before any consumes it. Needs row locks, so PostgreSQL (the suite's
    ``DATABASE_URL``); SQLite serialises these writers and is covered above."""
    if connection.vendor != "postgresql":
        pytest.skip("real concurrent writers need PostgreSQL (run the suite with DATABASE_URL)")
    agent = cast["agent1"]
    code, verifier = authorize_code(client, agent, cast.user, cast.scope)
    threads = 4
    barrier = threading.Barrier(threads)
    original = DelegationValidator.validate_code

    def validate_together(self: Any, *args: Any, **kwargs: Any) -> bool:
        valid = original(self, *args, **kwargs)
        barrier.wait(timeout=10)
        return valid

    monkeypatch.setattr(DelegationValidator, "validate_code", validate_together)
    results: list[Any] = [None] * threads

    def run(index: int) -> None:
        from django.db import connections

        try:
            results[index] = _view_redemption(agent, code, verifier)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * (threads - 1), [r.content for r in results]
    live = TokenLineage.objects.filter(revoked_at__isnull=True)
    assert live.count() <= 1
    assert not get_refresh_token_model().objects.filter(revoked__isnull=True).exists() or live.count() == 1


@pytest.mark.rfc("6749-4.1.2")
@pytest.mark.rfc("6749-10.5")
def test_a_replayed_code_revokes_an_opaque_token_and_its_refresh_token(
    cast, client, token_endpoint, settings
):
    """An application that keeps django-oauth-toolkit's opaque tokens (``JWT_ACCESS_TOKENS =
    "agents"``, the existing-site setting) has no lineage row: its redemption is remembered
    by the code's hash all the same, and a replay revokes what it issued."""
    from oauth2_provider.models import get_access_token_model, get_application_model

    from tests.conftest import Agent

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "JWT_ACCESS_TOKENS": "agents"}
    app = get_application_model().objects.create(
        name="legacy web app",
        client_type="confidential",
        authorization_grant_type="authorization-code",
        client_secret="legacy-secret",
        redirect_uris="https://legacy.example.com/cb",
        algorithm="",
    )
    legacy = Agent("legacy", app.client_id, "legacy-secret", "", "https://legacy.example.com/cb")
    code, verifier = authorize_code(client, legacy, cast.user, "tasks.read")
    first = token_endpoint(code_form(legacy, code, verifier), legacy)
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["access_token"].count(".") != 2  # opaque
    AccessToken = get_access_token_model()
    checksum = hashlib.sha256(body["access_token"].encode()).hexdigest()
    assert AccessToken.objects.filter(token_checksum=checksum).exists()

    assert_oauth_error(token_endpoint(code_form(legacy, code, verifier), legacy), 400, "invalid_grant")
    event = AuditEvent.objects.filter(event="token").order_by("-id").first()
    assert event is not None and (event.error, event.reason) == ("invalid_grant", "code_replayed")

    assert not AccessToken.objects.filter(token_checksum=checksum).exists()
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    refreshed = token_endpoint(refresh, legacy)
    assert_oauth_error(refreshed, 400, "invalid_grant")


def test_opaque_redemptions_are_swept_with_the_lineage(db):
    from delegation_idp.models import OpaqueRedemption

    now = timezone.now()
    old = OpaqueRedemption.objects.create(code_hash="a" * 64, expires_at=now - timedelta(days=400))
    recent = OpaqueRedemption.objects.create(code_hash="b" * 64, expires_at=now)
    retention.sweep_expired(now=now)
    assert list(OpaqueRedemption.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not OpaqueRedemption.objects.filter(pk=old.pk).exists()
    assert "a" * 12 in str(old) and "a" * 13 not in str(old)  # a prefix of the hash, never more
