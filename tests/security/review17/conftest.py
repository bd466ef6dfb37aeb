"""Fixtures of the DPoP review's findings: the provider's DPoP fixtures (a key per hop,
proofs made with it), reused from the RFC 9449 suite."""

from __future__ import annotations

from tests.e2e.rfc9449.conftest import (  # noqa: F401 - fixtures
    Prover,
    bound_user_token,
    keys_of,
    prover,
    worker,
)
