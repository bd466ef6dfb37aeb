"""A local https server with a certificate authority of its own, for code that fetches
documents over TLS (a Client ID Metadata Document, a JWK set, metadata) and must verify the
server's certificate as it would in production.

* :func:`make_authority` creates a CA and a server certificate for ``localhost`` and
  ``127.0.0.1`` signed by it (``cryptography``, ECDSA P-256), as PEM files in a directory.
  :attr:`Authority.ca_path` is what a client trusts: ``ssl.create_default_context(cafile=...)``,
  or ``SSL_CERT_FILE`` for code that builds its own default context (OpenSSL reads that
  variable whenever a context loads the default verify paths).
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

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Authority:
    """A test CA and one server certificate it signed (PEM files)."""

    ca_path: Path  # the CA certificate: what clients trust
    cert_path: Path  # the server's certificate
    key_path: Path  # the server's private key
    hosts: tuple[str, ...]

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_authority(directory: Path, hosts: tuple[str, ...] = HOSTS, *, days: int = 2) -> Authority:
    """A new CA and a server certificate for ``hosts`` (DNS names or IP addresses)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("delegation_idp test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    authority = Authority(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem", hosts)
    authority.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    authority.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    authority.key_path.touch(mode=0o600)
    authority.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return authority


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
