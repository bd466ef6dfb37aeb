"""Leg 2 against real services: the JWKS fetched over TLS by django-oauth-toolkit's CIMD
fetcher (certificate verified against a test CA, no redirects), and ``jti`` replay refused
through a Redis cache that every process shares."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp.models import AuditEvent, TrustedIssuer
from tests.helpers import assert_oauth_error, snapshot
from tests.support.tls import Document

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("trusted")]

PATH = "/oauth2/jwks"


@pytest.fixture
def served_jwks(https_documents: Any, trusted: TrustedIssuer, enterprise_key: Any, monkeypatch: Any) -> str:
    """The enterprise IdP's JWKS on the local https server, the test CA trusted."""
    url = https_documents.url(PATH)
    https_documents.documents[PATH] = Document(
        {"keys": [enterprise_key.public_jwk()]},
        headers={"Content-Type": "application/jwk-set+json", "Cache-Control": "max-age=600"},
    )
    TrustedIssuer.objects.filter(pk=trusted.pk).update(jwks_uri=url)
    monkeypatch.setenv("SSL_CERT_FILE", str(https_documents.authority.ca_path))
    return url


def test_the_jwks_is_fetched_over_tls_and_cached(served_jwks, https_documents, settings, redeem, make_id_jag):
    # The shipped fetcher, except that loopback counts as a public address (tests.support.cimd).
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "ID_JAG_JWKS_FETCHER": "tests.support.cimd.LoopbackTestFetcher",
    }
    assert redeem(make_id_jag()).status_code == 200
    assert redeem(make_id_jag()).status_code == 200
    assert [seen.path for seen in https_documents.requests] == [PATH]


def test_the_shipped_fetcher_refuses_a_loopback_jwks(served_jwks, settings, redeem, make_id_jag):
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "ID_JAG_JWKS_FETCHER": "oauth2_provider.cimd.SafeMetadataFetcher",
    }
    before = snapshot()
    assert_oauth_error(redeem(make_id_jag()), 503, "temporarily_unavailable")
    assert snapshot() == before


def test_a_redirect_is_not_followed(served_jwks, https_documents, settings, redeem, make_id_jag):
    settings.DELEGATION_IDP = {
        **settings.DELEGATION_IDP,
        "ID_JAG_JWKS_FETCHER": "tests.support.cimd.LoopbackTestFetcher",
    }
    https_documents.documents[PATH] = Document({}, 302, headers={"Location": https_documents.url("/other")})
    before = snapshot()
    assert_oauth_error(redeem(make_id_jag()), 503, "temporarily_unavailable")
    assert snapshot() == before
    assert [seen.path for seen in https_documents.requests] == [PATH]


def test_replay_is_refused_through_the_shared_cache(redis_url, settings, redeem, make_id_jag):
    import redis

    settings.CACHES = {
        **settings.CACHES,
        "replay": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    settings.DELEGATION_IDP = {**settings.DELEGATION_IDP, "ID_JAG_REPLAY_CACHE_ALIAS": "replay"}
    other_process = redis.Redis.from_url(redis_url)
    remembered = set(other_process.keys("*delegation_idp:dpop:*"))
    assertion = make_id_jag()
    assert redeem(assertion).status_code == 200
    # Another process sees the jti in Redis itself, not in this process's memory.
    assert len(set(other_process.keys("*delegation_idp:dpop:*")) - remembered) == 1
    before = snapshot()
    assert_oauth_error(redeem(assertion), 400, "invalid_grant")
    assert snapshot() == before
    assert AuditEvent.objects.order_by("-id").values_list("reason", flat=True).first() == "id_jag_replayed"
