"""The verifier's side of Token Status Lists (draft-ietf-oauth-status-list section 8.3).

No Django here. :class:`StatusListCache` answers "what is the status of index ``idx`` of the
list at ``uri``" for :class:`~delegation_idp.resource_server.validation.TokenValidator`:

* only URIs under the trusted issuer's origin (or the prefixes configured) are fetched, so a
  token cannot send this service to an address of its choosing;
* a list is fetched once per ``ttl`` (its claim, capped by
  :data:`delegation_idp.statuslist.claims.MAX_TTL`), with ``Accept: application/statuslist+jwt``,
  and no content coding, without following redirects, reading at most ``max_bytes`` as sent;
* the Status List Token is verified with the issuer's published keys only, by ``kid`` and on
  the algorithm allow-list (:func:`delegation_idp.jose.verify`), ``typ`` ``statuslist+jwt``;
  then ``sub`` must be the URI the token named, ``iss`` the issuer, ``exp`` not passed;
* ``lst`` is decompressed with a bound on its output (:func:`delegation_idp.statuslist.decode`);
* while a list cannot be refreshed, the copy in hand serves up to ``stale_seconds`` past its
  ``ttl`` (never past its ``exp``); a failed fetch is not retried for ``retry_interval``;
* while one thread refreshes a list, the others go on with the copy in hand (within the same
  stale bound) instead of waiting for the fetch.

Every refusal raises :class:`StatusListCheckError` with its reason from the catalogue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from delegation_idp import jose
from delegation_idp.core.reasons import Reason
from delegation_idp.statuslist import MEDIA_TYPE, TYP, Reference, StatusListError, decode, status_at
from delegation_idp.statuslist.claims import validate_list_claims

__all__ = ["StatusListCache", "StatusListCheckError"]

logger = logging.getLogger(__name__)

_JOSE_REASONS = {
    "too_large": Reason.STATUS_LIST_TOO_LARGE,
    "bad_signature": Reason.STATUS_LIST_SIGNATURE,
    "unknown_kid": Reason.STATUS_LIST_SIGNATURE,
    "bad_alg": Reason.STATUS_LIST_SIGNATURE,
    "bad_kid": Reason.STATUS_LIST_SIGNATURE,
    "bad_typ": Reason.STATUS_LIST_SIGNATURE,
}
_LIST_REASONS = {
    "too_large": Reason.STATUS_LIST_TOO_LARGE,
    "sub_mismatch": Reason.STATUS_LIST_SUBJECT_MISMATCH,
    "bad_iss": Reason.STATUS_LIST_SUBJECT_MISMATCH,
    "expired": Reason.STATUS_LIST_EXPIRED,
}


class StatusListCheckError(Exception):
    """The status of a token could not be established (or its entry is invalid)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class _Entry:
    array: bytes
    bits: int
    fetched_at: float  # monotonic
    ttl: float
    exp: float | None  # wall clock


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


class StatusListCache:
    """The status lists this service has read, keyed by URI. Thread-safe."""

    def __init__(
        self,
        *,
        issuer: str,
        http: httpx.Client,
        resolve_key: Callable[[str], jose.SigningKey | None],
        algorithms: Iterable[str],
        max_bytes: int,
        max_decompressed_bytes: int,
        max_header_bytes: int = 1024,
        max_json_depth: int = 16,
        leeway: float = 30,
        default_ttl: float = 60,
        stale_seconds: float = 300,
        retry_interval: float = 5,
        uri_prefixes: Iterable[str] = (),
        max_lists: int = 64,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.http = http
        self.resolve_key = resolve_key
        self.algorithms = tuple(algorithms)
        self.max_bytes = int(max_bytes)
        self.max_decompressed_bytes = int(max_decompressed_bytes)
        self.max_header_bytes = int(max_header_bytes)
        self.max_json_depth = int(max_json_depth)
        self.leeway = float(leeway)
        self.default_ttl = float(default_ttl)
        self.stale_seconds = float(stale_seconds)
        self.retry_interval = float(retry_interval)
        self.uri_prefixes = tuple(uri_prefixes) or (_origin(issuer),)
        self.max_lists = int(max_lists)
        self.clock = clock
        self.monotonic = monotonic
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._failed: dict[str, tuple[float, Reason]] = {}
        self._lock = threading.Lock()
        self._uri_locks: dict[str, threading.Lock] = {}
        #: how many lists were fetched (for tests and benchmarks)
        self.fetches = 0

    def status(self, reference: Reference) -> int:
        """The status value of ``reference`` (section 7), raising :class:`StatusListCheckError`."""
        uri = reference.uri
        if not any(uri.startswith(prefix) for prefix in self.uri_prefixes):
            raise StatusListCheckError(Reason.STATUS_LIST_REFERENCE_INVALID)
        entry = self._entry(uri)
        try:
            return status_at(entry.array, reference.idx, entry.bits)
        except StatusListError as exc:
            # Section 8.3: an index out of bounds allows no statement; the token is refused.
            raise StatusListCheckError(Reason.STATUS_LIST_REFERENCE_INVALID) from exc

    def _usable(self, entry: _Entry | None, *, stale: bool) -> bool:
        if entry is None:
            return False
        if entry.exp is not None and entry.exp + self.leeway <= self.clock():
            return False
        limit = entry.ttl + (self.stale_seconds if stale else 0)
        return self.monotonic() < entry.fetched_at + limit

    def _entry(self, uri: str) -> _Entry:
        entry = self._entries.get(uri)
        if self._usable(entry, stale=False):
            assert entry is not None
            return entry
        with self._lock:
            uri_lock = self._uri_locks.setdefault(uri, threading.Lock())
        if not uri_lock.acquire(blocking=False):
            if self._usable(entry, stale=True):
                # Another thread is refreshing this list: serve the copy in hand meanwhile.
                assert entry is not None
                return entry
            uri_lock.acquire()
        try:
            return self._refresh(uri)
        finally:
            uri_lock.release()

    def _refresh(self, uri: str) -> _Entry:
        """Fetch ``uri`` again (the caller holds its lock), or fall back on the stale copy."""
        entry = self._entries.get(uri)
        if self._usable(entry, stale=False):
            assert entry is not None
            return entry
        failed = self._failed.get(uri)
        if failed is not None and self.monotonic() < failed[0] + self.retry_interval:
            reason = failed[1]
        else:
            try:
                fresh = self._fetch(uri)
            except StatusListCheckError as exc:
                reason = exc.reason
                self._failed[uri] = (self.monotonic(), reason)
            else:
                self._store(uri, fresh)
                return fresh
        if self._usable(entry, stale=True):
            assert entry is not None
            logger.warning("status list could not be refreshed (%s); using the cached copy", reason.value)
            return entry
        raise StatusListCheckError(reason)

    def _store(self, uri: str, entry: _Entry) -> None:
        with self._lock:
            self._failed.pop(uri, None)
            self._entries[uri] = entry
            self._entries.move_to_end(uri)
            while len(self._entries) > self.max_lists:
                self._entries.popitem(last=False)

    def _read(self, uri: str) -> str:
        """The body at ``uri``, at most ``max_bytes`` as sent: no content coding is asked for
        or accepted, so the bound holds for what crosses the network and for what is kept
        (a gzip-coded body would be inflated chunk by chunk before any count)."""
        body = bytearray()
        headers = {"Accept": MEDIA_TYPE, "Accept-Encoding": "identity"}
        try:
            with self.http.stream("GET", uri, headers=headers) as response:
                if response.status_code != 200:
                    raise StatusListCheckError(Reason.STATUS_LIST_UNAVAILABLE)
                media = response.headers.get("content-type", "").split(";")[0].strip().lower()
                coding = response.headers.get("content-encoding", "identity").strip().lower()
                if media != MEDIA_TYPE or coding not in ("", "identity"):
                    raise StatusListCheckError(Reason.STATUS_LIST_MALFORMED)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise StatusListCheckError(Reason.STATUS_LIST_TOO_LARGE)
                for chunk in response.iter_bytes():  # identity: no decoding
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise StatusListCheckError(Reason.STATUS_LIST_TOO_LARGE)
        except httpx.HTTPError as exc:
            raise StatusListCheckError(Reason.STATUS_LIST_UNAVAILABLE) from exc
        try:
            return bytes(body).decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise StatusListCheckError(Reason.STATUS_LIST_MALFORMED) from exc

    def _fetch(self, uri: str) -> _Entry:
        token = self._read(uri)
        self.fetches += 1
        try:
            _header, claims = jose.verify(
                token,
                self.resolve_key,
                algorithms=self.algorithms,
                max_bytes=self.max_bytes,
                max_header_bytes=self.max_header_bytes,
                max_json_depth=self.max_json_depth,
                expected_typ=TYP,
            )
        except jose.JoseError as exc:
            raise StatusListCheckError(_JOSE_REASONS.get(exc.reason, Reason.STATUS_LIST_MALFORMED)) from exc
        except Exception as exc:  # the issuer's keys could not be had (its JWKS unreachable)
            raise StatusListCheckError(Reason.STATUS_LIST_UNAVAILABLE) from exc
        try:
            bits, lst, ttl = validate_list_claims(
                claims, uri=uri, issuer=self.issuer, now=self.clock(), leeway=self.leeway
            )
            array = decode(lst, max_compressed_bytes=self.max_bytes, max_bytes=self.max_decompressed_bytes)
        except StatusListError as exc:
            raise StatusListCheckError(_LIST_REASONS.get(exc.reason, Reason.STATUS_LIST_MALFORMED)) from exc
        exp: Any = claims.get("exp")
        return _Entry(
            array=array,
            bits=bits,
            fetched_at=self.monotonic(),
            ttl=ttl if ttl is not None else self.default_ttl,
            exp=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
        )
