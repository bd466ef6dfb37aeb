"""The claim checks of a client assertion (RFC 7523 section 3) and the memory of spent ``jti``
values, on their own: ``delegation_idp.provider.client_auth`` without the token endpoint
(tests/e2e/rfc7523 drives it over HTTP)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from delegation_idp.models import ClientAssertionJti
from delegation_idp.provider.client_auth import (
    AssertionRefused,
    check_assertion_claims,
    purge_used_assertions,
)

pytestmark = pytest.mark.rfc("7523-3")


def test_purge_forgets_only_expired_assertions(db: Any) -> None:
    now = timezone.now()
    ClientAssertionJti.objects.create(client_id="c", jti="old", expires_at=now - timedelta(seconds=1))
    ClientAssertionJti.objects.create(client_id="c", jti="live", expires_at=now + timedelta(seconds=60))
    assert purge_used_assertions(now) == 1
    assert list(ClientAssertionJti.objects.values_list("jti", flat=True)) == ["live"]


OURS = frozenset({"https://idp.example.com", "https://idp.example.com/o/token/"})


@given(
    aud=st.one_of(
        st.sampled_from(sorted(OURS)),
        st.lists(st.sampled_from(sorted(OURS) + ["https://evil.example.com", "x"]), max_size=4),
        st.text(max_size=30),
    )
)
def test_audience_property(aud: Any) -> None:
    """Accepted exactly when aud is non-empty and every value names this provider."""
    values = [aud] if isinstance(aud, str) else aud
    claims = {"iss": "c", "sub": "c", "aud": aud, "exp": 1060, "jti": "j"}
    expected = bool(values) and all(v in OURS for v in values)
    try:
        checked = check_assertion_claims(
            claims, client_id="c", audiences=OURS, now=1000, leeway=0, max_lifetime=300
        )
    except AssertionRefused as refused:
        assert not expected and refused.reason == "bad_audience"
    else:
        assert expected and checked.jti == "j" and checked.expires_at == 1060


@given(lifetime=st.integers(min_value=-100, max_value=1000))
def test_lifetime_property(lifetime: int) -> None:
    """exp must lie in (now - leeway, now + max_lifetime + leeway]."""
    claims = {"iss": "c", "sub": "c", "aud": "https://idp.example.com", "exp": 1000 + lifetime, "jti": "j"}
    ok = -10 < lifetime <= 310
    try:
        check_assertion_claims(claims, client_id="c", audiences=OURS, now=1000, leeway=10, max_lifetime=300)
    except AssertionRefused:
        assert not ok
    else:
        assert ok
