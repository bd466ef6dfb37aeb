"""The health endpoint: reachability of database, cache and broker as JSON, 200 or 503."""

from __future__ import annotations

import pytest
from django.urls import reverse

from delegation_idp.provider import health


def _fail() -> dict:
    raise ConnectionError("redis://:hunter2@10.0.0.9:6379/0 refused")


def test_all_reachable_is_200_ok(client, db):
    response = client.get(reverse("health"))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert all(check["ok"] for check in body["checks"].values())
    # The test settings run Celery eagerly with a per-process cache: the answer says so.
    assert body["checks"]["broker"]["eager"] is True
    assert body["checks"]["cache"]["shared"] is False


def test_database_down_is_503(client, db, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "database", _fail)
    response = client.get(reverse("health"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["cache"]["ok"] is True


@pytest.mark.parametrize("name", ["cache", "broker"])
def test_optional_dependency_down_is_200_degraded(client, db, monkeypatch, name):
    monkeypatch.setitem(health.CHECKS, name, _fail)
    response = client.get(reverse("health"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"][name]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_required_checks_come_from_settings(client, db, monkeypatch, settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "HEALTH_REQUIRED_CHECKS": ["database", "cache"]}
    monkeypatch.setitem(health.CHECKS, "cache", _fail)
    response = client.get(reverse("health"))
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_failure_details_never_reach_the_response_or_log(client, db, monkeypatch, caplog):
    monkeypatch.setitem(health.CHECKS, "broker", _fail)
    with caplog.at_level("WARNING", logger="delegation_idp.provider.health"):
        response = client.get(reverse("health"))
    assert b"hunter2" not in response.content and b"10.0.0.9" not in response.content
    assert "hunter2" not in caplog.text
    assert "health check broker failed: ConnectionError" in caplog.text


def test_real_broker_check_against_a_closed_port_fails():
    """The broker check really connects (no retry loop): a closed loopback port fails it."""
    from celery import current_app

    from tests.conftest import free_port

    saved = {k: current_app.conf[k] for k in ("task_always_eager", "broker_url")}
    current_app.conf.update(task_always_eager=False, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Exception):  # noqa: B017 - kombu raises the transport's own error type
            health.check_broker()
    finally:
        current_app.conf.update(saved)


def test_only_get_and_head(client, db):
    assert client.post(reverse("health")).status_code == 405
    assert client.head(reverse("health")).status_code == 200
