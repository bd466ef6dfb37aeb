"""Server-provided nonces (RFC 9449 sections 8 and 9): stateless, rotating, shared by every
process that holds the secret."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from delegation_idp.rfc9449 import NonceIssuer

pytestmark = pytest.mark.rfc("9449-8")

secrets_ = st.binary(min_size=1, max_size=64)
lifetimes = st.integers(min_value=1, max_value=86_400)
windows = st.integers(min_value=1, max_value=10**9)
offsets = st.floats(min_value=0, max_value=1, exclude_max=True)


@given(secrets_, lifetimes, windows, st.data(), st.integers(min_value=-3, max_value=3))
def test_a_nonce_of_window_w_is_accepted_in_w_and_w_plus_1_only(secret, lifetime, w, data, shift):
    issuer = NonceIssuer(secret, lifetime=lifetime)
    within = st.integers(min_value=0, max_value=lifetime - 1)  # whole seconds: no rounding across
    nonce = issuer.current(w * lifetime + data.draw(within))
    moment = (w + shift) * lifetime + data.draw(within)
    assert issuer.accepts(nonce, moment) is (shift in (0, 1))


@given(secrets_, lifetimes, windows, offsets, st.data())
def test_a_tampered_nonce_is_never_accepted(secret, lifetime, w, at, data):
    issuer = NonceIssuer(secret, lifetime=lifetime)
    now = (w + at) * lifetime
    nonce = issuer.current(now)
    position = data.draw(st.integers(min_value=0, max_value=len(nonce) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    tampered = nonce[:position] + replacement + nonce[position + 1 :]
    assume(tampered != nonce)
    assert not issuer.accepts(tampered, now)
    assert not issuer.accepts(nonce + data.draw(st.text(min_size=1, max_size=3)), now)
    assert not issuer.accepts(nonce[:position], now)


@given(secrets_, secrets_, lifetimes, windows)
def test_a_nonce_is_good_only_under_its_own_secret_and_label(secret, other, lifetime, w):
    assume(secret != other)
    now = w * lifetime
    nonce = NonceIssuer(secret, lifetime=lifetime, label="resource").current(now)
    assert NonceIssuer(secret, lifetime=lifetime, label="resource").accepts(nonce, now)  # another process
    assert not NonceIssuer(other, lifetime=lifetime, label="resource").accepts(nonce, now)
    assert not NonceIssuer(secret, lifetime=lifetime, label="token").accepts(nonce, now)


@pytest.mark.parametrize("spelling", ["0x{w:x}", "+{w:x}", " {w:x}", "{w:X}", "0{w:x}"])
def test_another_spelling_of_the_window_is_refused(spelling):
    """``int(..., 16)`` reads these as the same window; the nonce's MAC is of one spelling."""
    issuer = NonceIssuer(b"secret", lifetime=60)
    now = 0x1234 * 60
    head, mac = issuer.current(now).split(".")
    assert int(head, 16) == 0x1234
    variant = spelling.format(w=0x1234 if "X" not in spelling else 0xABCD)
    if "X" in spelling:
        now = 0xABCD * 60
        head, mac = issuer.current(now).split(".")
    assert not issuer.accepts(f"{variant}.{mac}", now)


def test_a_lifetime_under_one_second_is_refused():
    with pytest.raises(ValueError):
        NonceIssuer(b"secret", lifetime=0)
