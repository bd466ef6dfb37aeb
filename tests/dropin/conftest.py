"""Fixtures for the drop-in tests: run one system check under changed settings."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import include, path


def urlconf(*patterns: Any) -> ModuleType:
    """A root URLconf made of ``patterns`` (Django accepts a module object as well as its name)."""
    module = ModuleType("tests.dropin.generated_urls")
    module.urlpatterns = list(patterns)  # type: ignore[attr-defined]
    return module


IDP_URLS = path("o/", include("delegation_idp.urls"))
WELLKNOWN_URLS = path("", include("delegation_idp.wellknown_urls"))


@pytest.fixture
def check_ids():
    """Run a check function with settings overridden; return the ids it reported.

    ``idp`` and ``oauth2`` are merged into the current DELEGATION_IDP and
    OAUTH2_PROVIDER; other keyword arguments override Django settings.
    """

    def run(
        check: Any, *, idp: dict[str, Any] | None = None, oauth2: dict[str, Any] | None = None, **django: Any
    ):
        overrides = dict(django)
        if idp is not None:
            overrides["DELEGATION_IDP"] = {**settings.DELEGATION_IDP, **idp}
        if oauth2 is not None:
            overrides["OAUTH2_PROVIDER"] = {**settings.OAUTH2_PROVIDER, **oauth2}
        with override_settings(**overrides):
            messages = check(None)
        for message in messages:
            assert message.hint, f"{message.id} has no hint"
            assert message.id.startswith("delegation_idp.")
        return [message.id for message in messages]

    return run
