"""django-oauth-toolkit's shipped CIMD fetcher, for a test that serves the metadata document
from a local https server.

A test cannot serve from a public address, and the shipped fetcher (``SafeMetadataFetcher``)
refuses every address that is not globally routable, loopback included. So
:class:`LoopbackTestFetcher` differs from it in exactly one thing: for the duration of one
fetch, the loopback addresses count as public. Every other check runs as shipped: https
only, the certificate verified against the default trust store (a test sets
``SSL_CERT_FILE`` to its own CA, ``tests.support.tls``), the connection made to the address
that was checked, no redirects, the size cap, the content type, the timeout. The tests show
the shipped fetcher refusing the same URL (tests/registration/test_cimd_fetch.py).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from oauth2_provider import cimd

LOOPBACK = frozenset({"127.0.0.1", "::1"})


class LoopbackTestFetcher(cimd.SafeMetadataFetcher):
    """``SafeMetadataFetcher`` with the loopback addresses counted as public (tests only)."""

    def fetch(self, client_id: str) -> Any:
        shipped = cimd._ip_is_public

        def public(ip: str) -> bool:
            return ip in LOOPBACK or shipped(ip)

        with mock.patch.object(cimd, "_ip_is_public", public):
            return super().fetch(client_id)
