"""A local https server with a certificate authority of its own, for code that fetches
documents over TLS (a Client ID Metadata Document, a JWK set, metadata) and must verify the
server's certificate as it would in production.

* :func:`make_authority` (from ``example_project.demo_services.tls``, which the demo's second
  instance uses too) creates a CA and a server certificate for ``localhost`` and ``127.0.0.1``;
  :attr:`Authority.ca_path` is what a client trusts: ``ssl.create_default_context(cafile=...)``,
  or ``SSL_CERT_FILE`` for code that builds its own default context.
* :class:`DocumentServer` serves JSON documents from a dict (path -> :class:`Document`, with
  its status and the headers chosen for it, e.g. ``Cache-Control``) over TLS on loopback,
  one thread per connection, and records each request.
* The fixtures ``tls_authority`` (one CA per session) and ``https_documents`` (a server per
  test); a conftest imports them to use them::

      from tests.support.tls import https_documents, tls_authority  # noqa: F401 - fixtures

      def test_fetches(https_documents, monkeypatch):
          https_documents.documents["/client.json"] = Document({"client_id": ...})
          monkeypatch.setenv("SSL_CERT_FILE", str(https_documents.authority.ca_path))
          ... fetch https_documents.url("/client.json") ...
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from example_project.demo_services.tls import HOSTS, Authority, make_authority

__all__ = ["HOSTS", "Authority", "Document", "DocumentServer", "Seen", "make_authority"]


@dataclass
class Document:
    """What the server answers at one path: ``body`` as JSON (bytes are sent as they are)."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # Content-Type defaults to JSON


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer

    def do_GET(self) -> None:
        owner = self.server.owner
        owner.requests.append(Seen("GET", self.path, dict(self.headers.items())))
        document = owner.documents.get(urlsplit(self.path).path) or Document({"error": "not_found"}, 404)
        body = document.body if isinstance(document.body, bytes) else json.dumps(document.body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **document.headers}
        self.send_response(document.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: DocumentServer) -> None:
        self.owner = owner
        self.context = owner.authority.server_context()
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread: a client that refuses the
        # certificate (or stalls) never holds up the others.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError included: the client refused the certificate
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


class DocumentServer:
    """JSON documents over https on loopback, certified by ``authority``."""

    def __init__(self, authority: Authority, documents: dict[str, Document] | None = None) -> None:
        self.authority = authority
        self.documents: dict[str, Document] = dict(documents or {})
        self.requests: list[Seen] = []
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not running"
        return int(self._server.server_address[1])

    def url(self, path: str = "/", host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def __enter__(self) -> DocumentServer:
        self._server = _TLSServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None


@pytest.fixture(scope="session")
def tls_authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """One test CA and server certificate (localhost, 127.0.0.1) for the session."""
    return make_authority(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_documents(tls_authority: Authority) -> Iterator[DocumentServer]:
    """A running https document server (no documents yet: set ``.documents[path]``)."""
    with DocumentServer(tls_authority) as server:
        yield server
