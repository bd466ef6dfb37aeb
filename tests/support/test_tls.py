"""The test https server: a client that trusts the test CA reads its documents, with the
headers chosen for them; a client that does not trust it refuses the connection."""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest

from tests.support.tls import Document


def fetch(server, path: str, context: ssl.SSLContext, host: str = "localhost") -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection(host, server.port, context=context, timeout=10)
    connection.request("GET", path, headers={"Accept": "application/json"})
    return connection.getresponse()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_client_trusting_the_test_ca_reads_a_document_with_its_headers(https_documents, host):
    document = {"client_id": https_documents.url("/client.json"), "redirect_uris": ["http://127.0.0.1/cb"]}
    https_documents.documents["/client.json"] = Document(document, headers={"Cache-Control": "max-age=600"})
    context = ssl.create_default_context(cafile=str(https_documents.authority.ca_path))

    response = fetch(https_documents, "/client.json", context, host)

    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Cache-Control") == "max-age=600"
    assert json.loads(response.read()) == document
    assert [(seen.method, seen.path, seen.headers["Accept"]) for seen in https_documents.requests] == [
        ("GET", "/client.json", "application/json")
    ]


def test_an_unknown_path_is_404(https_documents):
    context = ssl.create_default_context(cafile=str(https_documents.authority.ca_path))
    response = fetch(https_documents, "/nothing-here", context)
    assert response.status == 404
    assert json.loads(response.read()) == {"error": "not_found"}


def test_a_default_context_without_the_test_ca_refuses_the_server(https_documents, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    https_documents.documents["/client.json"] = Document({"client_id": "x"})
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(https_documents, "/client.json", ssl.create_default_context())
    # ... and the server keeps serving the clients that do trust it.
    trusting = ssl.create_default_context(cafile=str(https_documents.authority.ca_path))
    assert fetch(https_documents, "/client.json", trusting).status == 200


def test_ssl_cert_file_makes_a_default_context_trust_the_test_ca(https_documents, monkeypatch):
    """What code that builds its own ``ssl.create_default_context()`` (django-oauth-toolkit's
    CIMD fetcher does) needs: the CA's path in ``SSL_CERT_FILE``."""
    https_documents.documents["/jwks.json"] = Document({"keys": []})
    monkeypatch.setenv("SSL_CERT_FILE", str(https_documents.authority.ca_path))
    response = fetch(https_documents, "/jwks.json", ssl.create_default_context())
    assert response.status == 200
    assert json.loads(response.read()) == {"keys": []}


def test_a_name_the_certificate_does_not_carry_is_refused(https_documents):
    """The certificate names only the loopback hosts: even a client trusting the CA refuses
    it for another name."""
    context = ssl.create_default_context(cafile=str(https_documents.authority.ca_path))
    with (
        socket.create_connection(("127.0.0.1", https_documents.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="idp.example.com")


def test_the_loopback_fetcher_counts_loopback_public_in_its_own_fetches_only():
    """While a LoopbackFetcher fetch runs in one thread, the shipped rule holds in another."""
    import threading

    from oauth2_provider import cimd

    from example_project.demo_services import tls

    seen: dict[str, bool] = {}
    inside = threading.Event()
    release = threading.Event()

    def fetching(self, client_id):  # stands in for SafeMetadataFetcher.fetch: asks the rule
        seen["own"] = cimd._ip_is_public("127.0.0.1")
        inside.set()
        release.wait(5)

    def other_thread():
        inside.wait(5)
        seen["other"] = cimd._ip_is_public("127.0.0.1")
        release.set()

    original = cimd.SafeMetadataFetcher.fetch
    cimd.SafeMetadataFetcher.fetch = fetching
    try:
        worker = threading.Thread(target=other_thread)
        worker.start()
        tls.LoopbackFetcher().fetch("https://127.0.0.1/x")
        worker.join(5)
    finally:
        cimd.SafeMetadataFetcher.fetch = original
    assert seen == {"own": True, "other": False}
    assert cimd._ip_is_public("127.0.0.1") is False  # after the fetch, the shipped rule
