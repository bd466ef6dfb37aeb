"""The example site served live in this process, for clients that speak plain HTTP to it.

pytest-django's ``live_server`` (Django's ``ThreadedWSGIServer`` in a thread, the way
``manage.py demo_live`` serves the provider), with the issuer set to the server's own URL
so that metadata, tokens and the RFC 9207 ``iss`` name the address clients connect to.
The test and the server share the database (the test is transactional: what one writes,
the other sees). A conftest turns it into a fixture::

    @pytest.fixture
    def live_provider(live_server, transactional_db, settings):
        with serve_live(live_server, settings) as issuer:
            yield issuer
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings


@contextmanager
def serve_live(live_server: Any, settings: Any) -> Iterator[str]:
    """The provider's issuer URL, served live, with a current signing key."""
    from delegation_idp.provider import keys

    with override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, "ISSUER": live_server.url}):
        keys.keyset.invalidate()
        keys.ensure_current_key()
        try:
            yield live_server.url
        finally:
            keys.keyset.invalidate()
