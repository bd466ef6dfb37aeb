"""A certificate authority of its own for loopback https, and django-oauth-toolkit's metadata
fetcher with loopback counted as public: for the demo's second instance (the enterprise IdP
over https, ``manage.py demo_live --enterprise``) and for the tests (tests.support.tls,
tests.support.cimd). Never for a deployment: a site fetches from public addresses only.

* :func:`make_authority` creates a CA and a server certificate for ``localhost`` and
  ``127.0.0.1`` signed by it (``cryptography``, ECDSA P-256), as PEM files in a directory.
  :attr:`Authority.ca_path` is what a client trusts: ``ssl.create_default_context(cafile=...)``,
  or ``SSL_CERT_FILE`` for code that builds its own default context (OpenSSL reads that
  variable whenever a context loads the default verify paths).
* :class:`LoopbackFetcher` is the shipped fetcher (``oauth2_provider.cimd.SafeMetadataFetcher``)
  differing in exactly one thing: during its own fetches (in the thread that runs them), the
  loopback addresses count as public; a shipped fetcher's fetch at the same time does not see
  it. Every other check runs as shipped: https only, the certificate verified against the
  default trust store, the connection made to the address that was checked, no redirects, the
  size cap, the content type, the timeout.
"""

from __future__ import annotations

import ipaddress
import ssl
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from oauth2_provider import cimd

__all__ = ["HOSTS", "LOOPBACK", "Authority", "LoopbackFetcher", "make_authority"]

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


LOOPBACK = frozenset({"127.0.0.1", "::1"})
# Whether loopback counts as public: in this thread (or task), for one fetch of LoopbackFetcher's,
# and nowhere else, so a fetch by the shipped fetcher at the same time keeps the shipped rule.
_loopback_public: ContextVar[bool] = ContextVar("loopback_public", default=False)
_shipped_ip_is_public = cimd._ip_is_public


def _ip_is_public(ip: str) -> bool:
    return (_loopback_public.get() and ip in LOOPBACK) or _shipped_ip_is_public(ip)


class LoopbackFetcher(cimd.SafeMetadataFetcher):
    """``SafeMetadataFetcher`` with the loopback addresses counted as public (demo and tests
    only), during its own fetches only: the module's address rule is replaced once, by one that
    asks the shipped rule unless this fetcher's fetch is running in the same thread."""

    def fetch(self, client_id: str) -> Any:
        if cimd._ip_is_public is not _ip_is_public:
            cimd._ip_is_public = _ip_is_public  # once, for the process; the shipped rule otherwise
        token = _loopback_public.set(True)
        try:
            return super().fetch(client_id)
        finally:
            _loopback_public.reset(token)
