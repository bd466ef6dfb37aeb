"""The real fetcher against a local https server with a test certificate authority: the
document is fetched and verified as in production, and django-oauth-toolkit's SSRF
hardening stays in force (the example site's fetcher refuses a loopback address; a
certificate nobody trusts, a redirect, a wrong content type or a document for another URL
are refused with the test fetcher too)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from oauth2_provider.models import get_application_model

from delegation_idp.models import AuditEvent, Party, RegistrationRule
from tests.support.tls import Document

from .conftest import REDIRECT, document

pytestmark = pytest.mark.integration

PATH = "/oauth/client.json"


@pytest.fixture
def served(https_documents: Any, cast: Any, settings: Any, monkeypatch: Any) -> str:
    """The client's metadata document on the local https server, a registration rule for
    ``localhost``, the test CA trusted, and the fetcher the example site ships."""
    from django.core.cache import cache

    cache.clear()  # django-oauth-toolkit's failure back-off
    url = https_documents.url(PATH)
    https_documents.documents[PATH] = Document(document(url), headers={"Cache-Control": "max-age=600"})
    rule = RegistrationRule.objects.create(via=Party.BY_CIMD, hosts="localhost", max_scope="tasks.read")
    rule.audiences.set([Party.objects.get(uri=cast["mcp-server1"].uri)])
    monkeypatch.setenv("SSL_CERT_FILE", str(https_documents.authority.ca_path))
    assert settings.OAUTH2_PROVIDER.get("CIMD_METADATA_FETCHER") is None  # the shipped default
    return url


@pytest.fixture
def loopback_fetcher(settings: Any) -> None:
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "CIMD_METADATA_FETCHER": "tests.support.cimd.LoopbackTestFetcher",
    }


def fetched(server: Any) -> list[str]:
    return [seen.path for seen in server.requests]


def registered(url: str) -> bool:
    return get_application_model().objects.filter(client_id=url).exists()


def test_the_shipped_fetcher_refuses_a_loopback_address(served, https_documents, login):
    """SSRF hardening in force: the document's host resolves to loopback, so nothing is
    fetched (not one request reaches the server) and no client is registered."""
    assert login(served, method="GET").response.status_code == 400
    assert fetched(https_documents) == []
    assert not registered(served)


@pytest.mark.rfc("cimd-4")
def test_the_document_is_fetched_over_verified_tls_and_the_client_registered(
    served, https_documents, loopback_fetcher, login, cast
):
    page = login(served, method="GET", resource=cast["mcp-server1"].uri)
    assert page.response.status_code == 200, page.response.content
    assert fetched(https_documents) == [PATH]
    party = Party.objects.get(uri=served)
    assert party.registration == Party.BY_CIMD and party.application.redirect_uris == REDIRECT
    arrived = AuditEvent.objects.filter(event="registration").last()
    assert (arrived.decision, arrived.client_id) == ("granted", served)


def test_a_certificate_nobody_trusts_is_refused(
    served, https_documents, loopback_fetcher, login, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE")
    assert login(served, method="GET").response.status_code == 400
    assert not registered(served)


@pytest.mark.parametrize("answer", ["redirect", "not-json", "too-large", "client-id-mismatch"])
def test_a_document_django_oauth_toolkit_would_refuse_is_refused(
    served, https_documents, loopback_fetcher, login, answer
):
    """Each case would register the client if its check were missing: the redirect leads to a
    valid document for this very URL, the oversized document is valid JSON, the HTML page is
    the document with another content type."""
    valid = document(served)
    elsewhere = "/elsewhere.json"
    https_documents.documents[elsewhere] = Document(valid)
    https_documents.documents[PATH] = {
        "redirect": Document({}, status=302, headers={"Location": https_documents.url(elsewhere)}),
        "not-json": Document(json.dumps(valid).encode(), headers={"Content-Type": "text/html"}),
        "too-large": Document(document(served, padding="x" * (20 * 1024))),  # a member nothing reads
        "client-id-mismatch": Document(document("https://localhost/someone-else.json")),
    }[answer]
    assert login(served, method="GET").response.status_code == 400
    assert fetched(https_documents) == [PATH]  # asked once (a redirect is not followed), then backed off
    assert not registered(served)
