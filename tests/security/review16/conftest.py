"""Fixtures of the RFC 8707 and self-registration tests, for the review's findings."""

from tests.e2e.rfc8707.conftest import authorize, redeem  # noqa: F401 - fixtures
from tests.registration.conftest import (  # noqa: F401 - fixtures
    fetcher,
    login,
    redeem_public,
    registration_rule,
)
