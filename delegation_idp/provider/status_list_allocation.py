"""Which entry of which Token Status List each new token gets (draft-ietf-oauth-status-list
sections 12.5 and 13.3), without collisions across threads and processes.

A thread reserves a block of ``STATUS_LIST_BLOCK_SIZE`` positions by inserting one
:class:`~delegation_idp.models.StatusListBlock` row: its id, from the database's sequence, is
never handed out twice, across processes and even when the transaction that inserted it rolls
back. Block ``b`` belongs to the live list with the greatest ``number`` not after it (read at
every block), while that list has room; otherwise it starts a new list numbered ``b``. A
reservation whose transaction rolled back is not used (:class:`_Pool`). The position within
the list goes through the list's keyed permutation
(:class:`delegation_idp.statuslist.Permutation`), so each index of a list is handed out at most
once and tokens issued one after another get unrelated indices. A thread uses a block for at
most :data:`POOL_MAX_AGE` seconds, after which a list that a newer one has replaced gets no new
tokens (:func:`delegation_idp.provider.status_lists.retire_status_lists` retires it once every
token in it expired, section 13.1).

Each list's URI segment and permutation key are derived from ``STATUS_LIST_SECRET`` and its
number (:func:`new_list_fields`): the same number always makes the same list. Where the
lists are served is :mod:`delegation_idp.provider.status_lists`' business: an entry here
names the list by number and slug.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.transaction import TransactionManagementError

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.models import StatusList, StatusListBlock
from delegation_idp.statuslist import Permutation

__all__ = ["POOL_MAX_AGE", "Entry", "new_list_fields", "next_entry", "reset_pools"]

#: Longest time (seconds) a thread hands out positions of a block it reserved.
POOL_MAX_AGE = 300


@dataclass(frozen=True)
class Entry:
    """Index ``idx`` of the list numbered ``list_number``, whose URI segment is ``slug``."""

    list_number: int
    idx: int
    slug: str


@dataclass(frozen=True)
class _List:
    number: int
    size: int
    block_size: int
    slug: str
    permutation: Permutation

    def covers(self, block: int) -> bool:
        return self.number <= block < self.number + self.size // self.block_size


class _Pool:
    """One thread's reserved positions: one block of one list at a time.

    Each thread has its own pool, as each thread has its own database connection: a block
    and list reserved inside a transaction are visible, and survive, only with it.
    ``pending`` is the ``on_commit`` callback of the transaction that reserved them: ``done``
    once it committed, still queued while it is open. A callback neither done nor queued was
    dropped with a rollback (or never registered, under manual transaction management), and
    the pool is refilled before its next entry.
    """

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.current: _List | None = None
        self.next = self.end = 0
        self.reserved_at = float("-inf")
        self.using = "default"
        self.pending: _Confirm | None = None

    def usable(self) -> bool:
        if self.next >= self.end or time.monotonic() - self.reserved_at > POOL_MAX_AGE:
            return False
        return self.pending is not None and (self.pending.done or _still_pending(self))


class _Confirm:
    """``on_commit`` callback: the transaction that reserved ``pool``'s rows committed."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self) -> None:
        self.done = True


def _still_pending(pool: _Pool) -> bool:
    """Whether the transaction that reserved ``pool``'s rows is still open on this thread's
    connection: its callback is still queued. Django drops the callbacks of a transaction or
    savepoint that rolls back (``run_on_commit``, read-only here); without that list the
    pool is refilled, which is safe."""
    queued = getattr(connections[pool.using], "run_on_commit", ())
    return any(entry[1] is pool.pending for entry in queued)


class _Pools(threading.local):
    pool: _Pool | None = None


_pools = _Pools()
# Advanced by reset_pools(): every thread's pool from before is dropped at its next use.
_epoch = itertools.count(1)
_current_epoch = next(_epoch)


def _pool() -> _Pool:
    pool = _pools.pool
    if pool is None or pool.epoch != _current_epoch:
        pool = _pools.pool = _Pool(_current_epoch)
    return pool


def reset_pools() -> None:
    """Forget every thread's reserved positions (tests; settings changes)."""
    global _current_epoch
    _current_epoch = next(_epoch)


def _secret() -> bytes:
    return str(idp_settings.STATUS_LIST_SECRET or settings.SECRET_KEY).encode()


def _derived(number: int, label: bytes) -> bytes:
    return hmac.new(_secret(), b"delegation_idp status list %s %d" % (label, number), hashlib.sha256).digest()


def new_list_fields(number: int) -> dict[str, Any]:
    return {
        "slug": jose.b64url(_derived(number, b"uri")[:16]),
        "size": int(idp_settings.STATUS_LIST_SIZE),
        "block_size": int(idp_settings.STATUS_LIST_BLOCK_SIZE),
        "bits": 1,
        "permutation_key": _derived(number, b"permutation").hex(),
    }


def _as_list(row: StatusList) -> _List:
    return _List(
        number=row.number,
        size=row.size,
        block_size=row.block_size,
        slug=row.slug,
        permutation=Permutation(bytes.fromhex(row.permutation_key), row.size),
    )


def _list_for(block: int, using: str) -> _List:
    """The list that block ``block`` belongs to, created when no live list has room for it.
    Read from the database at every block, never from a cache: a list that the retirement
    sweep retired, or whose row a rollback lost, gets no more entries."""
    lists = StatusList.objects.using(using)
    row = lists.filter(number__lte=block, retired_at__isnull=True).order_by("-number").first()
    if row is not None:
        candidate = _as_list(row)
        if candidate.covers(block):
            return candidate
    row, _ = lists.get_or_create(number=block, defaults=new_list_fields(block))
    return _as_list(row)


def _refill(pool: _Pool) -> None:
    using = router.db_for_write(StatusListBlock)
    block = StatusListBlock.objects.using(using).create().pk - 1
    current = _list_for(block, using)
    start = (block - current.number) * current.block_size
    pool.current, pool.next, pool.end = current, start, start + current.block_size
    pool.reserved_at = time.monotonic()
    pool.using = using
    pool.pending = _Confirm()
    try:
        transaction.on_commit(pool.pending, using=using)  # runs at once outside a transaction
    except TransactionManagementError:
        # Manual transaction management: nothing tells whether the caller will commit, so the
        # reservation is never confirmed and each entry gets a reservation of its own.
        pass


def next_entry() -> Entry:
    """A fresh entry for a token being issued; one insert and one read per block (and one more
    insert when the block starts a list)."""
    pool = _pool()
    if not pool.usable():
        _refill(pool)
    current = pool.current
    assert current is not None
    position = pool.next
    pool.next += 1
    return Entry(current.number, current.permutation.index(position), current.slug)
