"""Fault behaviour of the token endpoint: Redis unreachable, and a
database error in the middle of an exchange."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import override_settings

from delegation_idp.models import AuditEvent, TokenLineage
from delegation_idp.provider import tokens as claims
from tests.conftest import free_port
from tests.helpers import assert_oauth_error, decode, snapshot


def closed_redis() -> str:
    """A loopback port nobody listens on (the machine's Redis keeps running)."""
    return f"redis://127.0.0.1:{free_port()}/6"


@pytest.fixture
def redis_down(caplog: pytest.LogCaptureFixture):
    url = closed_redis()
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    idp = {
        **settings.DELEGATION_IDP,
        "REVOCATION_REDIS_URL": url,
        "THROTTLE_RATES": {"client": "600/min", "address": "1200/min"},
    }
    caplog.set_level(logging.WARNING)
    with override_settings(CACHES=caches, DELEGATION_IDP=idp, CELERY_BROKER_URL=url):
        from django.core.cache import caches as live

        live["default"].close()
        yield url
        live["default"].close()


def test_redis_down_exchange_and_revocation_still_work(
    cast, user_token, exchange, client, redis_down, caplog
):
    response = exchange("agent1", user_token, cast["agent2"].uri)
    assert response.status_code == 200, response.content
    child = response.json()["access_token"]
    assert "throttle cache unreachable" in caplog.text

    # RFC 7009 revocation of the root still takes effect, through the database.
    revoked = client.post(
        "/o/revoke_token/",
        {"token": user_token, "token_type_hint": "access_token"},
        HTTP_AUTHORIZATION=cast["agent1"].basic,
    )
    assert revoked.status_code == 200
    rows = TokenLineage.objects.filter(jti__in=[decode(t)[1]["jti"] for t in (user_token, child)])
    assert rows.count() == 2 and all(r.revoked_at is not None for r in rows)
    before = snapshot()
    assert_oauth_error(exchange("agent2", child, cast["mcp-server1"].uri), 400, "invalid_request")
    assert snapshot() == before
    assert user_token not in caplog.text and child not in caplog.text


def test_redis_down_user_token_issuance_still_works(issue_user_token, redis_down, caplog):
    token = issue_user_token()
    assert TokenLineage.objects.filter(jti=decode(token)[1]["jti"]).exists()


def assert_nothing_issued_but_audited(response: Any, before: tuple[int, int], events_before: int) -> None:
    body = assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response["Retry-After"] == "1"
    assert "access_token" not in body
    assert snapshot() == before, "a token or lineage row survived the failed transaction"
    assert AuditEvent.objects.count() == events_before + 1
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.decision, event.reason) == ("denied", "database_error")


def test_database_error_while_recording_lineage_rolls_everything_back(
    cast, user_token, exchange, monkeypatch, caplog
):
    """The lineage write fails inside the issuing transaction, after the token was signed."""
    from delegation_idp.rfc8693 import issue

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(issue, "record_issued", fail)
    before, events = snapshot(), AuditEvent.objects.count()
    response = exchange("agent1", user_token, cast["agent2"].uri)
    assert_nothing_issued_but_audited(response, before, events)
    assert user_token not in caplog.text


def test_real_integrity_error_mid_exchange_rolls_everything_back(cast, user_token, exchange, monkeypatch):
    """A jti collision makes the database itself refuse the lineage row (unique constraint),
    inside the issuing transaction."""
    taken = decode(user_token)[1]["jti"]
    monkeypatch.setattr(claims, "new_jti", lambda: taken)
    before, events = snapshot(), AuditEvent.objects.count()
    response = exchange("agent1", user_token, cast["agent2"].uri)
    assert_nothing_issued_but_audited(response, before, events)
    # The subject token itself is untouched and still works once the fault is gone.
    monkeypatch.undo()
    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200


def test_database_error_while_reading_the_subject_token(cast, user_token, exchange, monkeypatch):
    from delegation_idp.rfc8693 import exchange as pipeline

    def fail(jti: str) -> Any:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(pipeline, "subject_record", fail)
    before, events = snapshot(), AuditEvent.objects.count()
    response = exchange("agent1", user_token, cast["agent2"].uri)
    assert_nothing_issued_but_audited(response, before, events)
