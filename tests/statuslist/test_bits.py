"""The status byte array (draft-ietf-oauth-status-list section 4.1): the draft's own
examples, a round trip for any statuses, and reading refused before it can exhaust memory."""

from __future__ import annotations

import base64
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_idp.statuslist import INVALID, VALID, StatusListError, compress, decode, encode, status_at

pytestmark = pytest.mark.rfc("status-list-21-4.1")

LIMITS = {"max_compressed_bytes": 1 << 16, "max_bytes": 1 << 20}
# Section 4.1's first example: 16 entries of one bit, these ones INVALID.
ONE_BIT_INVALID = [0, 3, 4, 5, 7, 8, 9, 13, 15]
# Section 4.1's second example: 12 entries of two bits.
TWO_BIT_VALUES = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_one_bit_example_of_the_draft():
    array = encode(16, ONE_BIT_INVALID)
    assert array == bytes([0xB9, 0xA3])
    assert decode(b64(bytes.fromhex("78dadbb918000217015d")), **LIMITS) == array
    assert [status_at(array, i) for i in range(16)] == [int(i in ONE_BIT_INVALID) for i in range(16)]


def test_the_two_bit_example_of_the_draft():
    array = encode(12, list(enumerate(TWO_BIT_VALUES)), bits=2)
    assert array == bytes([0xC9, 0x44, 0xF9])
    assert decode(b64(bytes.fromhex("78da3be9f2130003df0207")), **LIMITS) == array
    assert [status_at(array, i, 2) for i in range(12)] == TWO_BIT_VALUES


@pytest.mark.rfc("status-list-21-4.2")
def test_lst_is_zlib_at_the_highest_level_in_base64url():
    lst = compress(encode(16, ONE_BIT_INVALID))
    assert "=" not in lst and "+" not in lst and "/" not in lst
    raw = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
    assert raw[:2] == b"\x78\xda"  # RFC 1950: deflate, 32K window, level 9
    assert zlib.decompress(raw) == bytes([0xB9, 0xA3])


@settings(max_examples=200, deadline=None)
@given(
    bits=st.sampled_from([1, 2, 4, 8]),
    data=st.data(),
)
def test_any_statuses_come_back_from_their_compressed_form(bits, data):
    size = data.draw(st.integers(min_value=1, max_value=3000))
    entries = st.dictionaries(st.integers(0, size - 1), st.integers(0, (1 << bits) - 1), max_size=200)
    values = data.draw(entries)
    array = decode(compress(encode(size, list(values.items()), bits)), **LIMITS)
    assert len(array) == (size * bits + 7) // 8
    for index in range(size):
        assert status_at(array, index, bits) == values.get(index, VALID)


def test_a_zlib_bomb_is_refused_without_inflating_it():
    """Section 11.1: 256 MiB of zeros compress to a quarter MiB; reading stops at the limit."""
    bomb = compress(bytes(256 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(StatusListError) as refused:
            decode(bomb, max_compressed_bytes=1 << 20, max_bytes=2 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.reason == "too_large"
    assert peak < 8 << 20  # the bounded output and the decoded input, never the 256 MiB


def test_a_long_compressed_text_is_refused_before_it_is_decoded():
    with pytest.raises(StatusListError) as refused:
        decode("A" * 2000, max_compressed_bytes=1000, max_bytes=1 << 20)
    assert refused.value.reason == "too_large"


@pytest.mark.parametrize(
    "lst",
    [
        b64(zlib.compress(b"\x01\x02")[:-3]),  # truncated: no checksum
        b64(zlib.compress(b"\x01") + b"trailing"),  # data after the stream
        b64(zlib.compress(b"\x01")[2:]),  # raw DEFLATE, no ZLIB header
        b64(b"not compressed at all"),
        "not base64!",
        b64(zlib.compress(b"")),  # an empty list
    ],
)
def test_anything_but_one_complete_zlib_stream_is_malformed(lst):
    with pytest.raises(StatusListError) as refused:
        decode(lst, **LIMITS)
    assert refused.value.reason == "malformed"


@pytest.mark.rfc("status-list-21-8.3")
def test_an_index_past_the_list_allows_no_statement():
    array = encode(16, [15])
    assert status_at(array, 15) == INVALID
    for index in (16, 10**9, -1):
        with pytest.raises(StatusListError) as refused:
            status_at(array, index)
        assert refused.value.reason == "out_of_range"


def test_statuses_that_do_not_fit_are_refused():
    with pytest.raises(StatusListError):
        encode(8, [(0, 2)], bits=1)
    with pytest.raises(StatusListError):
        encode(8, [8])
    with pytest.raises(StatusListError):
        encode(8, [], bits=3)
