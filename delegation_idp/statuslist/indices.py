"""Unpredictable indices within a list (draft-ietf-oauth-status-list sections 12.4, 12.5 and
13.3): the n-th token allocated from a list gets ``Permutation(key, size).index(n)``.

The permutation is a balanced Feistel network over the smallest even number of bits that
holds ``size - 1``, with HMAC-SHA256 keyed by the list's secret as its round function, and
cycle walking to stay below ``size``. It is a bijection of ``range(size)``: distinct positions
never share an index, so handing out each position once hands out each index once, while
neighbouring positions (tokens issued one after another) land on unrelated indices that do
not reveal the order of issuance nor how full the list is.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Permutation"]

ROUNDS = 4


class Permutation:
    """A keyed bijection of ``range(size)``."""

    def __init__(self, key: bytes, size: int) -> None:
        if size < 2:
            raise ValueError("a permutation needs at least two entries")
        if len(key) < 16:
            raise ValueError("the permutation key must have at least 128 bits")
        self.size = size
        half = max(1, ((size - 1).bit_length() + 1) // 2)
        self._half = half
        self._mask = (1 << half) - 1
        self._keys = [hmac.new(key, b"round%d" % r, hashlib.sha256).digest() for r in range(ROUNDS)]

    def _round(self, r: int, value: int) -> int:
        digest = hmac.new(self._keys[r], value.to_bytes(8, "big"), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") & self._mask

    def _encrypt(self, value: int) -> int:
        left, right = value >> self._half, value & self._mask
        for r in range(ROUNDS):
            left, right = right, left ^ self._round(r, right)
        return (left << self._half) | right

    def index(self, position: int) -> int:
        """The index of the ``position``-th allocation (``0 <= position < size``)."""
        if not 0 <= position < self.size:
            raise ValueError("position outside the list")
        value = self._encrypt(position)
        # Cycle walking: the Feistel domain is at most four times the list, so this
        # ends after a few steps on average, and always (the walk is a permutation cycle).
        while value >= self.size:
            value = self._encrypt(value)
        return value
