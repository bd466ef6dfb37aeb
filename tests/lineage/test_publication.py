"""The Redis revocation set resource servers read (key format in
docs/lineage.md), against the real Redis."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from delegation_idp import tasks
from delegation_idp.lineage import publication, revocation
from delegation_idp.models import TokenLineage
from tests.helpers import decode

pytestmark = pytest.mark.integration

PREFIX = "delegation_idp:revoked:"


@pytest.fixture
def published(settings, lineage_redis_url):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "REVOCATION_REDIS_URL": lineage_redis_url}
    client = redis.Redis.from_url(lineage_redis_url)
    yield client
    client.close()


def test_a_revocation_is_published_when_it_commits(chain, published, django_capture_on_commit_callbacks):
    claims = [decode(t)[1] for t in chain]
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_subtree(claims[1]["jti"])
    assert not published.exists(PREFIX + claims[0]["jti"])
    for c in claims[1:]:
        assert published.get(PREFIX + c["jti"]) == b"revoked"
        ttl = published.ttl(PREFIX + c["jti"])
        remaining = c["exp"] - time.time() + 30  # CLOCK_SKEW_SECONDS
        assert remaining - 5 <= ttl <= remaining + 2
        assert publication.is_revoked(published, c["jti"])
    assert not publication.is_revoked(published, claims[0]["jti"])


def test_the_full_publication_repairs_a_flushed_redis(chain, published):
    claims = [decode(t)[1] for t in chain]
    revocation.revoke_subtree(
        claims[2]["jti"], reason="party_disabled"
    )  # on_commit never ran: nothing published
    assert not published.exists(PREFIX + claims[2]["jti"])
    assert publication.publish_revocations(batch_size=1) == 2
    assert published.get(PREFIX + claims[2]["jti"]) == b"party_disabled"
    assert published.exists(PREFIX + claims[3]["jti"])
    assert not published.exists(PREFIX + claims[1]["jti"])
    heartbeat = int(published.get(PREFIX + "@published"))
    assert abs(heartbeat - time.time()) < 5


def test_expired_revocations_are_not_published(chain, published):
    jti = decode(chain[3])[1]["jti"]
    revocation.revoke_subtree(jti)
    TokenLineage.objects.filter(jti=jti).update(expires_at=timezone.now() - timedelta(minutes=5))
    assert publication.publish_revocations() == 0
    assert not published.exists(PREFIX + jti)


def test_command_and_eager_task(chain, published):
    revocation.revoke_subtree(decode(chain[0])[1]["jti"])
    out = io.StringIO()
    call_command("publish_revocations", stdout=out)
    assert out.getvalue().strip() == "published=4"
    published.flushdb()
    assert tasks.publish_revocations.delay().get() == {"published": 4}
    assert all(published.exists(PREFIX + decode(t)[1]["jti"]) for t in chain)


def test_an_unreachable_redis_never_fails_a_revocation(chain, settings, django_capture_on_commit_callbacks):
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "REVOCATION_REDIS_URL": "redis://127.0.0.1:1/0"}
    with django_capture_on_commit_callbacks(execute=True):
        revoked = revocation.revoke_subtree(decode(chain[0])[1]["jti"])
    assert len(revoked) == 4
    assert TokenLineage.objects.filter(revoked_at__isnull=False).count() == 4
