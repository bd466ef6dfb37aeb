"""The benchmark's own arithmetic: percentiles, ratios against their targets, the table."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from bench.load import Sample
from bench.run import TARGETS, compute_ratios, render
from bench.scenarios import DESCRIPTIONS


@given(st.lists(st.floats(min_value=0.0001, max_value=10), min_size=1, max_size=300))
def test_percentiles_are_order_statistics(latencies: list[float]) -> None:
    sample = Sample(latencies=latencies, elapsed=1.0)
    p50, p99 = sample.percentile(50), sample.percentile(99)
    assert p50 in latencies and p99 in latencies
    assert min(latencies) <= p50 <= p99 <= max(latencies)
    below = sum(1 for x in latencies if x <= p99)
    assert below >= math.ceil(0.99 * len(latencies))
    assert sample.throughput == len(latencies)


@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(min_value=0.0001, max_value=10), max_size=50),
            st.floats(min_value=0.01, max_value=10),
            st.dictionaries(st.sampled_from(["400", "500", "OSError"]), st.integers(1, 5), max_size=2),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_interleaved_rounds_add_up_to_one_sample(
    rounds: list[tuple[list[float], float, dict[str, int]]],
) -> None:
    """The benchmark runs each scenario in short rounds; merged, they are one measurement."""
    merged = Sample()
    for latencies, elapsed, errors in rounds:
        merged.merge(Sample(latencies=list(latencies), errors=dict(errors), elapsed=elapsed))
    assert sorted(merged.latencies) == sorted(x for r in rounds for x in r[0])
    assert math.isclose(merged.elapsed, sum(r[1] for r in rounds))
    assert merged.ok == sum(len(r[0]) for r in rounds)
    for key in ("400", "500", "OSError"):
        assert merged.errors.get(key, 0) == sum(r[2].get(key, 0) for r in rounds)


def http_result(exchange: float, unhashed: float, hashed: float, d8_ms: float, two_workers: float) -> dict:
    def s(rps: float, mean: float) -> dict:
        return {"throughput_rps": rps, "mean_ms": mean, "p50_ms": mean, "p99_ms": mean, "requests": 10}

    one = {
        "cc_hashed": s(hashed, 1000 / hashed),
        "cc_unhashed": s(unhashed, 1000 / unhashed),
        "exchange_d1": s(exchange, 1000 / exchange),
        "exchange_d8": s(1000 / d8_ms, d8_ms),
    }
    return {"w1c1": one, "w1c4": one, "w2c1": one, "w2c4": {**one, "exchange_d1": s(two_workers, 1.0)}}


def test_ratios_are_judged_against_the_targets() -> None:
    http = http_result(exchange=90, unhashed=100, hashed=2, d8_ms=1000 / 90 * 1.1, two_workers=170)
    rows = compute_ratios(http, {})
    assert [r["ratio"] for r in rows[: len(TARGETS)]] == [t[0] for t in TARGETS]
    assert [r["value"] for r in rows[:4]] == [0.9, 45.0, 1.1, 1.889]
    assert [r["met"] for r in rows[:4]] == [True, True, True, True]
    slow = compute_ratios(http_result(50, 100, 1, 1000 / 50 * 1.5, 60), {})
    assert [r["met"] for r in slow[:4]] == [False, True, False, False]


def test_missing_measurements_are_reported_not_invented() -> None:
    rows = compute_ratios({}, {})
    assert all(r["value"] is None and r["met"] is None for r in rows)


def test_table_names_every_scenario_and_target() -> None:
    http = http_result(90, 100, 2, 12, 170)
    result = {"in_process": {}, "http": http, "ratios": compute_ratios(http, {})}
    table = render(result)
    for name in DESCRIPTIONS:
        assert name in table
    assert "HTTP 2w 4c" in table and "MISSED" not in table


@given(st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=5, unique=True), st.integers(1, 8))
def test_interleaved_rounds_run_every_scenario_once_per_round_in_rotated_order(names, rounds) -> None:
    from bench.scenarios import interleaved

    order = list(interleaved(names, rounds))
    assert len(order) == len(names) * rounds
    per_round = [order[i * len(names) : (i + 1) * len(names)] for i in range(rounds)]
    assert all(sorted(r) == sorted(names) for r in per_round)
    assert [r[0] for r in per_round] == [names[i % len(names)] for i in range(rounds)]
