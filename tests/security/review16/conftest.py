"""Fixtures of the RFC 8707 and self-registration tests, and helpers, for the review's findings."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from tests.e2e.rfc8707.conftest import authorize, redeem  # noqa: F401 - fixtures
from tests.registration.conftest import (  # noqa: F401 - fixtures
    fetcher,
    login,
    redeem_public,
    registration_rule,
)


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def edited_consent_form(cast: Any, **extra: Any) -> dict[str, Any]:
    """agent1's consent form with its redirect_uri edited to one nobody registered."""
    _verifier, challenge = pkce()
    return {
        "client_id": cast["agent1"].client_id,
        "redirect_uri": "https://evil.example.net/steal",
        "response_type": "code",
        "scope": cast.scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
