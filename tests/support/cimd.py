"""django-oauth-toolkit's shipped CIMD fetcher, for a test that serves the metadata document
from a local https server.

A test cannot serve from a public address, and the shipped fetcher (``SafeMetadataFetcher``)
refuses every address that is not globally routable, loopback included. So
:class:`LoopbackTestFetcher` (``example_project.demo_services.tls.LoopbackFetcher``, which the
demo's second instance uses too) differs from it in exactly one thing: for the duration of one
fetch, the loopback addresses count as public. Every other check runs as shipped: https
only, the certificate verified against the default trust store (a test sets
``SSL_CERT_FILE`` to its own CA, ``tests.support.tls``), the connection made to the address
that was checked, no redirects, the size cap, the content type, the timeout. The tests show
the shipped fetcher refusing the same URL (tests/registration/test_cimd_fetch.py).
"""

from __future__ import annotations

from example_project.demo_services.tls import LoopbackFetcher as LoopbackTestFetcher

__all__ = ["LoopbackTestFetcher"]
