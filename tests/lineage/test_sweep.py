"""Sweeps in bounded batches, the thin tasks and their beat entries,
and the subtree property on random trees."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth2_provider.models import get_access_token_model, get_application_model

from delegation_idp import tasks
from delegation_idp.lineage import retention, revocation
from delegation_idp.models import AuditEvent, TokenLineage
from tests.conftest import Agent
from tests.helpers import decode


def make_rows(count: int, *, expired_for: timedelta, prefix: str = "x") -> None:
    now = timezone.now()
    TokenLineage.objects.bulk_create(
        TokenLineage(
            jti=f"{prefix}{i}",
            root_jti=f"{prefix}{i}",
            path=f"{prefix}{i}",
            grant_type="client_credentials",
            subject="s",
            client_id="c",
            kid="k",
            issued_at=now - expired_for - timedelta(hours=1),
            expires_at=now - expired_for,
        )
        for i in range(count)
    )


def test_sweep_deletes_lineage_past_retention_only(db, settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "LINEAGE_RETENTION_SECONDS": 3600}
    make_rows(7, expired_for=timedelta(hours=2), prefix="old")
    make_rows(3, expired_for=timedelta(minutes=30), prefix="recent")
    result = retention.sweep_expired(batch_size=2)
    assert result.lineage == 7
    assert set(TokenLineage.objects.values_list("jti", flat=True)) == {"recent0", "recent1", "recent2"}


def test_sweep_queries_grow_with_batches_not_rows(db, settings):
    from django.db import connection

    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "LINEAGE_RETENTION_SECONDS": 0}
    make_rows(50, expired_for=timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries:
        assert retention.sweep_expired(batch_size=10).lineage == 50
    lineage_queries = [q for q in queries.captured_queries if "tokenlineage" in q["sql"]]
    # One SELECT of primary keys and one DELETE per batch of 10, plus the empty last SELECT.
    assert len(lineage_queries) <= 2 * 5 + 2
    assert all(q["sql"].count("%s") < 20 or "IN" in q["sql"] for q in lineage_queries)


def test_sweep_deletes_expired_access_tokens_and_keeps_their_lineage(cast, user_token, token_endpoint):
    AccessToken = get_access_token_model()
    Application = get_application_model()
    Application.objects.create(
        name="sweep service",
        client_id="sweep-service",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret="sweep-secret",
        hash_client_secret=False,
    )
    service = Agent("svc", "sweep-service", "sweep-secret", "", "")
    tokens = [
        token_endpoint({"grant_type": "client_credentials"}, service).json()["access_token"] for _ in range(3)
    ]
    past = timezone.now() - timedelta(hours=1)
    AccessToken.objects.filter(token__in=tokens).update(expires=past)
    AccessToken.objects.filter(token=user_token).update(expires=past)  # bound to its refresh token
    result = retention.sweep_expired()
    assert result.access_tokens == 3
    assert not AccessToken.objects.filter(token__in=tokens).exists()
    assert AccessToken.objects.filter(token=user_token).exists()
    # Lineage stays for audit (retention not reached) and is unlinked, not revoked.
    for token in tokens:
        row = TokenLineage.objects.get(jti=decode(token)[1]["jti"])
        assert row.access_token_id is None and row.revoked_at is None


def test_sweep_keeps_access_tokens_bound_to_a_refresh_token(cast, user_token):
    AccessToken = get_access_token_model()
    AccessToken.objects.filter(token=user_token).update(expires=timezone.now() - timedelta(hours=1))
    assert retention.sweep_expired().access_tokens == 0
    assert AccessToken.objects.filter(token=user_token).exists()


def test_sweep_audit_retention(db, settings):
    AuditEvent.objects.create(event="token", decision="granted")
    old = AuditEvent.objects.create(event="token", decision="denied")
    AuditEvent.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=400))
    assert retention.sweep_expired().audit == 0  # kept forever by default
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "AUDIT_RETENTION_SECONDS": 365 * 24 * 3600}
    assert retention.sweep_expired().audit == 1
    assert AuditEvent.objects.count() == 1


def test_sweep_command_and_task(db, settings):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "LINEAGE_RETENTION_SECONDS": 0}
    make_rows(4, expired_for=timedelta(hours=1), prefix="a")
    out = io.StringIO()
    call_command("sweep_tokens", "--batch-size", "3", stdout=out)
    assert out.getvalue().strip() == "access_tokens=0 lineage=4 audit=0 approvals=0"
    make_rows(2, expired_for=timedelta(hours=1), prefix="b")
    result = tasks.sweep_expired.delay(batch_size=1).get()
    assert result == {"access_tokens": 0, "lineage": 2, "audit": 0, "approvals": 0}


def test_publish_task_and_command_without_redis(db):
    assert tasks.publish_revocations.delay().get() == {"published": 0}
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("publish_revocations")


def test_beat_schedules_the_sweep_and_the_publication():
    from django.conf import settings as django_settings

    from example_project.celery import app

    app.loader.import_default_modules()
    entries = {e["task"]: e for e in django_settings.CELERY_BEAT_SCHEDULE.values()}
    for name in ("delegation_idp.tasks.sweep_expired", "delegation_idp.tasks.publish_revocations"):
        assert name in entries
        assert name in app.tasks


# -- the subtree property ------------------------------------------------------------


@st.composite
def trees(draw: Any) -> list[int | None]:
    """Parent index of each node (None for roots); nodes come after their parents."""
    size = draw(st.integers(min_value=1, max_value=25))
    parents: list[int | None] = []
    for i in range(size):
        parents.append(draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None)
    return parents


def build(parents: list[int | None]) -> list[str]:
    now = timezone.now()
    paths: list[str] = []
    rows = []
    for i, parent in enumerate(parents):
        jti = f"n{i}"
        path = jti if parent is None else f"{paths[parent]}/{jti}"
        paths.append(path)
        rows.append(
            TokenLineage(
                jti=jti,
                parent_jti="" if parent is None else f"n{parent}",
                root_jti=path.split("/")[0],
                path=path,
                depth=path.count("/"),
                grant_type="x",
                subject="s",
                client_id="c",
                kid="k",
                issued_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    TokenLineage.objects.bulk_create(rows)
    return paths


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(parents=trees(), data=st.data())
def test_revoke_subtree_revokes_exactly_the_descendants(db, parents, data):
    target = data.draw(st.integers(0, len(parents) - 1))
    with transaction.atomic():
        paths = build(parents)
        revoked = set(revocation.revoke_subtree(f"n{target}"))
        mine = paths[target]
        expected = {f"n{i}" for i, p in enumerate(paths) if p == mine or p.startswith(mine + "/")}
        assert revoked == expected
        still = set(TokenLineage.objects.filter(revoked_at__isnull=True).values_list("jti", flat=True))
        assert still == {f"n{i}" for i in range(len(parents))} - expected
        transaction.set_rollback(True)
