"""The metrics benchmark's arithmetic: its ratios against the 3 percent target, and its table."""

from __future__ import annotations

from bench.metrics_bench import TARGET, ratios, render


def timing(mean_ms: float, p50_ms: float | None = None) -> dict:
    return {"mean_ms": mean_ms, "p50_ms": p50_ms or mean_ms, "throughput_rps": 1000 / mean_ms, "requests": 10}


def inprocess(off_ms: float, on_ms: float, off_us: float = 30.0, on_us: float = 100.0) -> dict:
    return {
        "off": {**timing(off_ms), "requests": 10, "metrics_code_us": off_us},
        "on": {**timing(on_ms), "requests": 10, "metrics_code_us": on_us},
    }


def test_each_on_off_ratio_is_judged_against_the_target() -> None:
    http = {"off": timing(10.0), "on": timing(10.2), "on-multiprocess": timing(10.4)}
    rows = {
        r["ratio"]: r
        for r in ratios(http, {"memory": inprocess(8.0, 8.1), "multiprocess": inprocess(8.0, 8.0)})
    }
    assert TARGET == 1.03
    assert (
        rows["HTTP on / off (mean latency)"]["value"] == 1.02 and rows["HTTP on / off (mean latency)"]["met"]
    )
    missed = rows["HTTP on-multiprocess / off (mean latency)"]
    assert missed["value"] == 1.04 and missed["met"] is False
    assert rows["in-process on / off (mean latency)"]["met"] is True
    assert rows["HTTP on / off (median latency)"]["met"] is None  # information only


def test_the_table_reports_the_direct_cost_as_a_share_of_an_exchange() -> None:
    http = {"off": timing(10.0), "on": timing(10.1), "on-multiprocess": timing(10.2)}
    inproc = {
        "memory": inprocess(10.0, 10.0, 30.0, 130.0),
        "multiprocess": inprocess(10.0, 10.0, 30.0, 230.0),
    }
    result = {"http": http, "in_process": inproc, "ratios": ratios(http, inproc), "counted": {}}
    table = render(result)
    assert "on minus off = 1.00% of a median exchange" in table  # 100 us of 10 ms
    assert "on minus off = 2.00% of a median exchange" in table
    assert "MISSED" not in table
