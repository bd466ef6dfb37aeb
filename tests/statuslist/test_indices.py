"""Index allocation within a list (draft-ietf-oauth-status-list sections 12.5 and 13.3): a
keyed permutation, so each position gets its own index and neighbours look unrelated."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_idp.statuslist import Permutation

pytestmark = pytest.mark.rfc("status-list-21-12.5")


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=2, max_value=3000), key=st.binary(min_size=16, max_size=32))
def test_every_position_gets_a_distinct_index_inside_the_list(size, key):
    permutation = Permutation(key, size)
    indices = [permutation.index(p) for p in range(size)]
    assert sorted(indices) == list(range(size))


def test_the_same_key_gives_the_same_indices_and_another_key_others():
    first, again, other = (Permutation(k, 1 << 20) for k in (b"k" * 16, b"k" * 16, b"x" * 16))
    positions = range(1000)
    assert [first.index(p) for p in positions] == [again.index(p) for p in positions]
    assert sum(first.index(p) == other.index(p) for p in positions) < 5


@pytest.mark.rfc("status-list-21-12.4")
def test_consecutive_tokens_do_not_get_neighbouring_or_increasing_indices():
    permutation = Permutation(bytes(range(16)), 1 << 20)
    indices = [permutation.index(p) for p in range(2000)]
    neighbours = sum(abs(a - b) <= 16 for a, b in zip(indices, indices[1:], strict=False))
    increasing = sum(b > a for a, b in zip(indices, indices[1:], strict=False))
    assert neighbours < 5
    assert 800 < increasing < 1200  # as for a random order, not issuance order


def test_positions_outside_the_list_and_weak_keys_are_refused():
    with pytest.raises(ValueError):
        Permutation(b"k" * 16, 8).index(8)
    with pytest.raises(ValueError):
        Permutation(b"short", 8)
