"""A rotation never makes issuance wait longer than ``ISSUANCE_LOCK_TIMEOUT`` (PostgreSQL).

Every issuance share-locks the row of the key it signed with; a rotation locks the
current key's row for its state flip. A frozen worker that holds that lock (simulated
here by another connection) must turn an exchange into a prompt JSON 503, not a hang;
and a rotation's slow part (generating the key) happens before it takes the lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from delegation_idp import jose
from delegation_idp.models import SigningKey
from delegation_idp.provider import rotation
from tests.helpers import assert_oauth_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOCK_TIMEOUT = 1.0
RELEASE_AFTER = 20.0  # the simulated frozen worker lets go eventually, so the suite never hangs


@pytest.fixture(autouse=True)
def on_postgres(settings: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row-lock waits are PostgreSQL's (SQLite serialises writers: its busy timeout)")
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "ISSUANCE_LOCK_TIMEOUT": LOCK_TIMEOUT}


def hold_current_key_lock() -> Any:
    """Another connection locks the current key's row as a rotation does, and keeps it."""
    import psycopg

    params = connection.get_connection_params()
    holder = psycopg.connect(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")}
    )
    holder.execute("SELECT kid FROM delegation_idp_signingkey WHERE state = 'current' FOR UPDATE").fetchall()
    timer = threading.Timer(RELEASE_AFTER, holder.rollback)
    timer.start()
    return holder, timer


def test_exchange_answers_503_within_the_lock_timeout_while_a_rotation_holds_its_lock(
    cast, user_token, exchange
):
    holder, timer = hold_current_key_lock()
    try:
        started = time.monotonic()
        response = exchange("agent1", user_token, cast["agent2"].uri)
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        holder.rollback()
        holder.close()
    assert elapsed < LOCK_TIMEOUT + 2, f"issuance waited {elapsed:.1f}s on the rotation's lock"
    body = assert_oauth_error(response, 503, "temporarily_unavailable")
    assert "access_token" not in body
    assert response["Retry-After"]
    # Once the lock is gone, the same exchange succeeds.
    assert exchange("agent1", user_token, cast["agent2"].uri).status_code == 200


def test_a_rotation_generates_its_key_before_locking(cast, user_token, exchange, monkeypatch):
    """A slow key generation (RSA, a loaded machine) does not hold the lock issuance needs."""
    real = jose.generate_key
    generating = threading.Event()

    def slow_generate(alg: str) -> Any:
        generating.set()
        time.sleep(3 * LOCK_TIMEOUT)
        return real(alg)

    monkeypatch.setattr(jose, "generate_key", slow_generate)
    rotating = threading.Thread(target=rotation.rotate_keys, kwargs={"force": True})
    rotating.start()
    try:
        assert generating.wait(10)
        started = time.monotonic()
        response = exchange("agent1", user_token, cast["agent2"].uri)
        elapsed = time.monotonic() - started
    finally:
        rotating.join(30)
    assert response.status_code == 200, response.content
    assert elapsed < LOCK_TIMEOUT, f"issuance waited {elapsed:.1f}s for the rotation"
    assert SigningKey.objects.filter(state=SigningKey.CURRENT).count() == 1
    assert SigningKey.objects.filter(state=SigningKey.NEXT).count() == 1
