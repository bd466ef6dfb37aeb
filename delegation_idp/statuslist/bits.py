"""The status byte array of a Token Status List (draft-ietf-oauth-status-list section 4.1).

Each referenced token has an index; its status takes ``bits`` bits (1, 2, 4 or 8), packed
from the least significant bit of byte 0 up: index 0 is bit 0 of byte 0, index 8 bit 0 of
byte 1 (with ``bits`` 1). The array is compressed with DEFLATE in the ZLIB format (RFC 1950,
RFC 1951) at the highest level and carried base64url-encoded in ``lst`` (section 4.2).

Reading a list back is bounded twice (section 11.1): the compressed text is measured before
it is decoded, and decompression stops as soon as the output would pass ``max_bytes``, so a
ZLIB bomb costs at most that much memory.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable

__all__ = ["INVALID", "VALID", "StatusListError", "compress", "decode", "encode", "status_at"]

#: Status types (section 7.1): valid, and revoked ("INVALID", irreversible).
VALID, INVALID = 0x00, 0x01
BITS = (1, 2, 4, 8)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class StatusListError(ValueError):
    """A status list that cannot be read; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or bits not in BITS:
        raise StatusListError("bad_bits", "bits must be 1, 2, 4 or 8")


def encode(size: int, statuses: Iterable[tuple[int, int]] | Iterable[int], bits: int = 1) -> bytes:
    """The uncompressed byte array for ``size`` tokens, all VALID but ``statuses``: pairs
    ``(index, value)``, or bare indices (then INVALID)."""
    _check_bits(bits)
    if size < 1:
        raise StatusListError("bad_size", "a list has at least one entry")
    array = bytearray((size * bits + 7) // 8)
    per_byte, mask = 8 // bits, (1 << bits) - 1
    for item in statuses:
        index, value = item if isinstance(item, tuple) else (item, INVALID)
        if not 0 <= index < size or not 0 <= value <= mask:
            raise StatusListError("out_of_range", f"status {value} at index {index} does not fit")
        byte, slot = divmod(index, per_byte)
        shift = slot * bits
        array[byte] = (array[byte] & ~(mask << shift) & 0xFF) | (value << shift)
    return bytes(array)


def compress(array: bytes) -> str:
    """``lst``: the array compressed (ZLIB, level 9) and base64url-encoded without padding."""
    return base64.urlsafe_b64encode(zlib.compress(array, 9)).rstrip(b"=").decode("ascii")


def decode(lst: str, *, max_compressed_bytes: int, max_bytes: int) -> bytes:
    """The byte array of ``lst``, refused (``too_large``) when its text is longer than the
    base64 of ``max_compressed_bytes`` or its content would pass ``max_bytes`` once
    decompressed. Never allocates more than about ``max_bytes`` for the output."""
    if not isinstance(lst, str):
        raise StatusListError("malformed", "lst is not a string")
    if len(lst) > (max_compressed_bytes * 4 + 2) // 3:
        raise StatusListError("too_large", "the compressed list is too large")
    if not _B64URL.fullmatch(lst):
        raise StatusListError("malformed", "lst is not base64url")
    try:
        compressed = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
    except (binascii.Error, ValueError) as exc:
        raise StatusListError("malformed", "lst is not base64url") from exc
    inflater = zlib.decompressobj()  # ZLIB header and Adler-32 checksum required (RFC 1950)
    try:
        # One more byte than allowed: getting it back proves the content is too large.
        array = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as exc:
        raise StatusListError("malformed", "lst is not ZLIB-compressed") from exc
    if len(array) > max_bytes:
        raise StatusListError("too_large", "the decompressed list is too large")
    if not inflater.eof or inflater.unused_data:
        # Truncated, or followed by data that is not part of the stream.
        raise StatusListError("malformed", "lst is not one complete ZLIB stream")
    if not array:
        raise StatusListError("malformed", "the list is empty")
    return array


def status_at(array: bytes, index: int, bits: int = 1) -> int:
    """The status of ``index`` (section 4.1's packing); ``out_of_range`` past the array
    (section 8.3: no statement can be made, the token must be refused)."""
    _check_bits(bits)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise StatusListError("out_of_range", "index must be a non-negative integer")
    per_byte = 8 // bits
    byte, slot = divmod(index, per_byte)
    if byte >= len(array):
        raise StatusListError("out_of_range", "index past the end of the list")
    return (array[byte] >> (slot * bits)) & ((1 << bits) - 1)
