"""The database down at every endpoint: a JSON ``503 temporarily_unavailable`` with
``Retry-After`` and ``no-store``, never a 500 or an HTML page; the refusal leaves a trace
even when the audit table is unreachable too; and a token issued just before the database
died is still delivered."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError, connection
from oauth2_provider.models import get_access_token_model

from delegation_idp.models import AuditEvent, TokenLineage
from tests.conftest import authorize_code, code_form
from tests.helpers import assert_oauth_error, decode, snapshot

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(autouse=True)
def committed(transactional_db: Any) -> None:
    """No test-wide transaction: a failed query must not poison the test's own checks."""


@contextmanager
def database_down() -> Iterator[None]:
    """Every query fails as it does when PostgreSQL is gone (the audit table's included)."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection to server failed: Connection refused")

    with connection.execute_wrapper(fail):
        yield


def assert_unavailable(response: Any) -> dict[str, Any]:
    body = assert_oauth_error(response, 503, "temporarily_unavailable")
    assert int(response["Retry-After"]) >= 1
    assert body.get("error_description")
    return body


@pytest.fixture
def form(client: Any):
    def post(path: str, data: dict[str, str], agent: Any, **extra: Any) -> Any:
        return client.post(path, data, HTTP_AUTHORIZATION=agent.basic, **extra)

    return post


@pytest.fixture
def grants(cast, clients, client, token_endpoint, issue_user_token):
    """One valid token request per grant, prepared while the database is up."""

    def build(name: str) -> tuple[dict[str, str], Any]:
        if name == "client_credentials":
            return {"grant_type": "client_credentials"}, clients["plain-client"]
        if name == "authorization_code":
            code, verifier = authorize_code(client, cast["agent1"], cast.user, cast.scope)
            return code_form(cast["agent1"], code, verifier), cast["agent1"]
        if name == "refresh_token":
            code, verifier = authorize_code(client, cast["agent1"], cast.user, cast.scope)
            issued = token_endpoint(code_form(cast["agent1"], code, verifier), cast["agent1"]).json()
            return {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}, cast["agent1"]
        subject = issue_user_token()
        return {
            "grant_type": GRANT,
            "subject_token": subject,
            "subject_token_type": ACCESS,
            "audience": cast["agent2"].uri,
        }, cast["agent1"]

    return build


@pytest.mark.rfc("6749-5.2")
@pytest.mark.parametrize("grant", ["client_credentials", "authorization_code", "refresh_token", "exchange"])
def test_every_grant_answers_503_when_the_database_is_down(grant, grants, token_endpoint, caplog):
    data, agent = grants(grant)
    before = snapshot()
    caplog.set_level(logging.INFO, logger="delegation_idp.audit.fallback")
    with database_down():
        response = token_endpoint(data, agent)
    assert_unavailable(response)
    assert snapshot() == before
    # The audit table was down as well: the refusal is in the fallback log instead.
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "delegation_idp.audit.fallback"]
    assert len(lines) == 1, caplog.text
    assert lines[0]["decision"] == "denied"
    assert lines[0]["reason"] == "database_error"
    assert lines[0]["error"] == "temporarily_unavailable"
    assert lines[0]["client_id"] == agent.client_id
    assert lines[0]["client_ip"] == "127.0.0.1"
    secrets = [v for k, v in data.items() if k in ("code", "code_verifier", "refresh_token", "subject_token")]
    for secret in (agent.client_secret, *secrets):
        assert secret not in caplog.text


def test_a_database_error_in_a_grant_with_the_audit_up_is_audited(grants, token_endpoint, monkeypatch):
    """Only the grant's query fails: the refusal is an ordinary audit row."""
    from oauth2_provider.oauth2_validators import OAuth2Validator

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    data, agent = grants("authorization_code")
    monkeypatch.setattr(OAuth2Validator, "validate_code", fail)
    events = AuditEvent.objects.count()
    assert_unavailable(token_endpoint(data, agent))
    assert AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.decision, event.error, event.reason) == (
        "denied",
        "temporarily_unavailable",
        "database_error",
    )


@pytest.mark.rfc("7662-2.3")
def test_introspection_answers_503_when_the_database_is_down(cast, user_token, form):
    with database_down():
        response = form("/o/introspect/", {"token": user_token}, cast["agent1"])
    assert_unavailable(response)


@pytest.mark.rfc("7009-2.2.1")
def test_revocation_answers_503_when_the_database_is_down(cast, user_token, form, caplog):
    caplog.set_level(logging.INFO, logger="delegation_idp.audit.fallback")
    with database_down():
        response = form("/o/revoke_token/", {"token": user_token}, cast["agent1"])
    assert_unavailable(response)
    assert user_token not in caplog.text
    assert TokenLineage.objects.get(jti=decode(user_token)[1]["jti"]).revoked_at is None


@pytest.mark.rfc("7517-5")
def test_jwks_answers_503_when_the_database_is_down(client, db):
    from delegation_idp.provider.keys import keyset

    keyset.invalidate()
    with database_down():
        response = client.get("/.well-known/jwks.json")
    assert_unavailable(response)


@pytest.mark.rfc("8414-3.2")
def test_metadata_does_not_need_the_database(client, db):
    with database_down():
        response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.json()["issuer"] == "http://testserver"


def test_a_token_issued_before_the_database_died_is_delivered(cast, client, token_endpoint, caplog):
    """django-oauth-toolkit reads the issued token back after a 200 (for ``app_authorized``);
    that read failing must not turn an issued, audited token into a 500."""
    code, verifier = authorize_code(client, cast["agent1"], cast.user, cast.scope)
    manager = type(get_access_token_model().objects)
    real_get = manager.get
    failed: list[bool] = []

    def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "token_checksum" in kwargs and not failed:
            failed.append(True)
            raise OperationalError("server closed the connection unexpectedly")
        return real_get(self, *args, **kwargs)

    caplog.set_level(logging.WARNING)
    with mock.patch.object(manager, "get", get):
        response = token_endpoint(code_form(cast["agent1"], code, verifier), cast["agent1"])
    assert failed, "the read-back happened"
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    token = response.json()["access_token"]
    assert TokenLineage.objects.get(jti=decode(token)[1]["jti"]).revoked_at is None
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.decision, event.jti) == ("granted", decode(token)[1]["jti"])
    assert "app_authorized" in caplog.text
    assert token not in caplog.text


@pytest.mark.rfc("6749-5.2")
def test_a_code_spent_by_a_parallel_redemption_mid_validation_is_invalid_grant(
    cast, client, token_endpoint, monkeypatch
):
    """The code row vanishes between django-oauth-toolkit's reads of it (another request
    redeemed it, READ COMMITTED): invalid_grant, not a 500."""
    from oauth2_provider.models import get_grant_model
    from oauth2_provider.oauth2_validators import OAuth2Validator

    real = OAuth2Validator.validate_code

    def validate_then_lose(self: Any, client_id: Any, code: Any, *args: Any, **kwargs: Any) -> bool:
        valid = real(self, client_id, code, *args, **kwargs)
        get_grant_model().objects.filter(code=code).delete()  # the parallel redemption
        return bool(valid)

    code, verifier = authorize_code(client, cast["agent1"], cast.user, cast.scope)
    monkeypatch.setattr(OAuth2Validator, "validate_code", validate_then_lose)
    before = snapshot()
    assert_oauth_error(
        token_endpoint(code_form(cast["agent1"], code, verifier), cast["agent1"]), 400, "invalid_grant"
    )
    assert snapshot() == before
