"""Fixtures for the drop-in tests: one system check under changed settings, the built wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
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


ROOT = Path(__file__).resolve().parents[2]

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


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built once per session as docs/installation.md step 1 says
    (``python -m build --wheel``, here into a temporary folder instead of ``dist/``)."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("delegation_idp-*-py3-none-any.whl")
    return wheel
