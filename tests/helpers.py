"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import json
from typing import Any


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims, unverified: for assertions on tokens the provider issued."""
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(
        base64.urlsafe_b64decode(pad(payload))
    )


def snapshot() -> tuple[int, int]:
    """(access tokens, lineage rows): to show that a refused request issued nothing."""
    from oauth2_provider.models import get_access_token_model

    from delegation_idp.models import TokenLineage

    return get_access_token_model().objects.count(), TokenLineage.objects.count()


def assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    assert body["error"] == error, body
    assert "access_token" not in body
    return body


def with_idp(**options: Any) -> Any:
    """``override_settings`` of some ``DELEGATION_IDP`` options, the others kept."""
    from django.conf import settings
    from django.test import override_settings

    return override_settings(DELEGATION_IDP={**settings.DELEGATION_IDP, **options})
