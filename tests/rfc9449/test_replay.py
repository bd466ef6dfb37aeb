"""Replay (RFC 9449 section 11.1): a proof's ``jti`` is accepted once, in this process and
across processes that share the store; of two requests that race with one proof, one wins."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from delegation_idp.rfc9449 import (
    CacheReplayStore,
    MemoryReplayStore,
    ProofError,
    RedisReplayStore,
    check_proof,
)
from tests.rfc9449.conftest import URL

pytestmark = pytest.mark.rfc("9449-11.1")


def accept(policy, proof: str) -> bool:
    try:
        check_proof([proof], method="GET", url=URL, now=time.time(), policy=policy)
    except ProofError as exc:
        assert exc.reason == "dpop_replayed"
        return False
    return True


def race(policies, proof: str, threads: int = 8) -> list[bool]:
    """``threads`` requests with one proof at once, spread over ``policies`` (processes)."""
    barrier = threading.Barrier(threads)
    results: list[bool] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        outcome = accept(policies[i % len(policies)], proof)
        with lock:
            results.append(outcome)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_the_memory_store_accepts_a_key_once_and_forgets_it_after_its_ttl():
    store = MemoryReplayStore()
    assert store.first_use("short", 0)  # expired at once: the next sweep forgets it
    assert store.first_use("short", 60)
    assert not store.first_use("short", 60)
    assert store.first_use("other", 60)


def test_the_memory_store_is_bounded():
    store = MemoryReplayStore(max_entries=3)
    for key in "abcd":
        assert store.first_use(key, 60)
    assert len(store._seen) <= 3
    assert store.first_use("a", 60)  # the oldest went first


def test_one_proof_racing_in_one_process_is_accepted_once(policy, prover):
    assert sorted(race([policy], prover.proof("GET", URL))) == [False] * 7 + [True]


def test_the_django_cache_store_refuses_a_replay(policy, prover):
    shared = replace(policy, replay=CacheReplayStore("default"))
    other = replace(policy, replay=CacheReplayStore("default"))  # another store, the same cache
    proof = prover.proof("GET", URL)
    assert accept(shared, proof)
    assert not accept(other, proof)


@pytest.fixture
def redis_clients(redis_url):
    """Two clients of the same Redis database, as two processes would hold."""
    import redis

    first, second = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    first.flushdb()
    yield first, second
    first.flushdb()


@pytest.mark.integration
def test_a_proof_accepted_by_one_process_is_refused_by_another_sharing_redis(policy, prover, redis_clients):
    first, second = (replace(policy, replay=RedisReplayStore(c)) for c in redis_clients)
    proof = prover.proof("GET", URL)
    assert accept(first, proof)
    assert not accept(second, proof)
    assert not accept(first, proof)
    # The key is kept for the proof's window only, and names no client input verbatim.
    (key,) = redis_clients[0].keys("delegation_idp:dpop:*")
    assert 0 < redis_clients[0].ttl(key) <= policy.max_age + policy.leeway + 1
    assert prover.jkt.encode() not in key


@pytest.mark.integration
def test_one_proof_racing_across_processes_sharing_redis_is_accepted_once(policy, prover, redis_clients):
    policies = [replace(policy, replay=RedisReplayStore(c)) for c in redis_clients]
    assert sorted(race(policies, prover.proof("GET", URL))) == [False] * 7 + [True]
