"""The circuit breaker: closed, open after a failure, one probe when half-open (injected clock)."""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_idp.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise ConnectionError("down")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> Breaker:
    return Breaker("thing", reset_seconds=10, clock=clock, fallback="doing without")


def test_closed_calls_go_through(breaker):
    assert breaker.call(lambda: 42) == 42
    assert breaker.state == CLOSED


def test_one_failure_opens_and_open_calls_are_not_attempted(breaker, clock):
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    assert breaker.state == OPEN
    attempted: list[int] = []
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        breaker.call(attempted.append, 1)
    assert attempted == [], "an open breaker must not wait on the dependency"


def test_after_the_reset_time_exactly_one_probe_goes_through(breaker, clock):
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    clock.now += 10
    assert breaker.state == HALF_OPEN
    assert breaker.allow() is True  # the probe
    assert breaker.allow() is False, "a second caller waits for the probe's outcome"
    breaker.success()
    assert breaker.state == CLOSED
    assert breaker.allow() is True


def test_a_failed_probe_opens_for_another_full_period(breaker, clock):
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    clock.now += 10
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    clock.now += 9
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: None)
    clock.now += 1
    assert breaker.call(lambda: "back") == "back"
    assert breaker.state == CLOSED


def test_logs_once_per_opening_not_per_call(breaker, clock, caplog):
    caplog.set_level(logging.WARNING, logger="delegation_idp.breaker")
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    for _ in range(50):
        with pytest.raises(CircuitOpen):
            breaker.call(lambda: None)
    clock.now += 10
    with pytest.raises(ConnectionError):
        breaker.call(fail)  # a failed probe: still the same outage
    opened = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(opened) == 1
    assert opened[0].getMessage() == "thing unreachable; circuit open for 10s, doing without"
    clock.now += 10
    breaker.call(lambda: None)
    assert "thing answers again; circuit closed" in caplog.text
    assert breaker.openings == 1


def test_reset_time_is_read_at_each_opening(clock):
    period = {"s": 5.0}
    b = Breaker("x", reset_seconds=lambda: period["s"], clock=clock)
    b.failure()
    clock.now += 5
    assert b.state == HALF_OPEN
    period["s"] = 60.0
    assert b.state == OPEN


def test_an_interrupted_probe_does_not_leave_the_breaker_stuck(breaker, clock):
    breaker.failure()
    clock.now += 10

    def interrupted() -> None:
        raise KeyboardInterrupt  # e.g. a worker timeout while waiting on the socket

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    clock.now += 10
    assert breaker.call(lambda: 1) == 1


def test_concurrent_callers_are_not_serialised_and_only_one_probes(clock):
    """The lock guards the state only: while a probe hangs, the others fall back at once."""
    b = Breaker("x", reset_seconds=1, clock=clock)
    b.failure()
    clock.now += 1
    release = threading.Event()
    probing = threading.Event()

    def hanging_probe() -> str:
        probing.set()
        release.wait(10)
        return "ok"

    probe = threading.Thread(target=b.call, args=(hanging_probe,))
    probe.start()
    assert probing.wait(5)
    refused: list[bool] = []

    def other() -> None:
        try:
            b.call(lambda: None)
        except CircuitOpen:
            refused.append(True)

    others = [threading.Thread(target=other) for _ in range(8)]
    for t in others:
        t.start()
    for t in others:
        t.join(2)
    assert not any(t.is_alive() for t in others), "callers queued behind the probe"
    assert refused == [True] * 8
    release.set()
    probe.join(5)
    assert b.state == CLOSED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 30), st.booleans()), max_size=40))
def test_at_most_one_attempt_per_period_while_the_dependency_is_down(steps):
    """Property: with the dependency down from the first failure on, attempts are at
    least one reset period apart, whatever the timing of the callers."""
    clock = Clock()
    b = Breaker("x", reset_seconds=10, clock=clock)
    attempts: list[float] = []

    def down() -> None:
        attempts.append(clock.now)
        raise ConnectionError

    for advance, _ in steps:
        clock.now += advance
        try:
            b.call(down)
        except (ConnectionError, CircuitOpen):
            pass
    assert all(later - earlier >= 10 for earlier, later in zip(attempts, attempts[1:], strict=False))
