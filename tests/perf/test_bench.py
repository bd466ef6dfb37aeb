"""The benchmark's own arithmetic: percentiles, ratios against their targets, the table."""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import time
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.load import Sample
from bench.run import TARGETS, compute_ratios, render, server_envs
from bench.scenarios import DESCRIPTIONS, SCENARIOS, SERVERS, requests, token_kind


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
    # Each round is also kept on its own, in order: its throughput and mean latency.
    assert len(merged.rounds) == len(rounds)
    for (rps, mean), (latencies, elapsed, _) in zip(merged.rounds, rounds, strict=True):
        assert math.isclose(rps, len(latencies) / elapsed)
        assert (mean is None) == (not latencies)
        if latencies:
            assert min(latencies) * 1000 <= mean * (1 + 1e-9) and mean <= max(latencies) * 1000 * (1 + 1e-9)


def http_result(
    exchange: float,
    stock: float,
    hashed: float,
    d8_ms: float,
    cc_agents_ms: float,
    cc_all_ms: float | None = None,
    stock_mw: float | None = None,
    two_workers: float | None = None,
    dpop_ms: float | None = None,
) -> dict:
    """Measurements shaped like bench.run.measure_http's: throughputs in requests per
    second, latencies in ms, one client (closed loop: mean latency = 1000 / throughput)."""

    def s(rps: float) -> dict:
        mean = 1000 / rps
        return {"throughput_rps": rps, "mean_ms": mean, "p50_ms": mean, "p99_ms": mean, "requests": 10}

    w1c1 = {
        "stock_unhashed": s(stock),
        "stock_unhashed_mw": s(stock_mw or stock),
        "stock_hashed": s(hashed),
        "exchange_d1": s(exchange),
        "exchange_d1_dpop": s(1000 / (dpop_ms or 1000 / exchange * 1.1)),
        "exchange_d8": s(1000 / d8_ms),
        "project_cc_agents": s(1000 / cc_agents_ms),
        "project_cc_all": s(1000 / (cc_all_ms or cc_agents_ms)),
    }
    w1c4 = {"exchange_d1": s(exchange), "stock_unhashed": s(stock)}
    w2c4 = {"exchange_d1": s(two_workers or exchange), "stock_unhashed": s(stock)}
    return {"w1c1": w1c1, "w1c4": w1c4, "w2c4": w2c4}


def values(rows: list[dict]) -> dict:
    return {r["ratio"]: r["value"] for r in rows}


def test_ratios_are_judged_against_the_targets() -> None:
    # exchange 110 req/s against the stock grant's 100 and the hashed grant's 2; the
    # project's opaque grant 10.5 ms against the stock grant's 10 ms; depth 8 1.05 x depth 1.
    http = http_result(exchange=110, stock=100, hashed=2, d8_ms=1000 / 110 * 1.05, cc_agents_ms=10.5)
    rows = compute_ratios(http, {})
    assert [r["ratio"] for r in rows[: len(TARGETS)]] == [t[0] for t in TARGETS]
    assert [r["target"] for r in rows[: len(TARGETS)]] == [f"{op} {target}" for _, op, target in TARGETS]
    assert [r["value"] for r in rows[:5]] == [1.1, 55.0, 1.05, 1.05, 1.1]
    assert [r["met"] for r in rows[:5]] == [True, True, True, True, True]
    # Exactly at the targets is met, both ways round; a hair beyond is missed, though it
    # prints the same (the targets judge the unrounded ratio).
    edge = http_result(100, 100, 2.5, 11, 11)
    for name, mean in (
        ("exchange_d1", 10.0),
        ("exchange_d8", 11.0),
        ("stock_unhashed", 10.0),
        ("exchange_d1_dpop", 12.5),
    ):
        edge["w1c1"][name]["mean_ms"] = mean
    edge["w1c1"]["project_cc_agents"]["mean_ms"] = 11.0
    rows = compute_ratios(edge, {})
    assert [r["value"] for r in rows[:5]] == [1.0, 40.0, 1.1, 1.1, 1.25]
    assert [r["met"] for r in rows[:5]] == [True, True, True, True, True]
    edge["w1c1"]["exchange_d1"]["throughput_rps"] = 99.99
    edge["w1c1"]["project_cc_agents"]["mean_ms"] = 11.0001
    edge["w1c1"]["exchange_d1_dpop"]["mean_ms"] = 12.5001
    rows = compute_ratios(edge, {})
    assert [r["value"] for r in rows[:5]] == [1.0, 39.996, 1.1, 1.1, 1.25]
    assert [r["met"] for r in rows[:5]] == [False, False, False, True, False]
    # Exchange at 0.9 of the stock grant and 36 x the hashed one; opaque grant 1.3 x; depth 8
    # 1.2 x; the DPoP-bound exchange 1.4 x the bearer one.
    slow = compute_ratios(http_result(90, 100, 2.5, 1000 / 90 * 1.2, 13, dpop_ms=1000 / 90 * 1.4), {})
    assert [r["value"] for r in slow[:5]] == [0.9, 36.0, 1.3, 1.2, 1.4]
    assert [r["met"] for r in slow[:5]] == [False, False, False, False, False]


def with_rounds(http: dict, name: str, throughputs: list[float]) -> None:
    http["w1c1"][name]["rounds"] = [{"throughput_rps": r, "mean_ms": 1000 / r} for r in throughputs]


def test_each_target_is_also_judged_round_by_round() -> None:
    """The pooled ratio decides; the rounds show how far it moved within the run."""
    http = http_result(exchange=100, stock=100, hashed=2, d8_ms=10, cc_agents_ms=10)
    with_rounds(http, "exchange_d1", [90, 110, 100])
    with_rounds(http, "stock_unhashed", [100, 100, 100])
    row = compute_ratios(http, {})[0]
    assert row["rounds"] == [0.9, 1.1, 1.0]
    assert row["rounds_met"] == 2  # 1.1 and exactly 1.0 meet ">= 1.0"; 0.9 misses
    # Latency targets compare the rounds' mean latencies (project_cc_agents at 11 ms, then 9).
    with_rounds(http, "project_cc_agents", [1000 / 11, 1000 / 9, 100])
    row = compute_ratios(http, {})[2]
    assert row["rounds"] == [1.1, 0.9, 1.0] and row["rounds_met"] == 3
    table = render({"in_process": {}, "http": http, "ratios": compute_ratios(http, {})})
    line = next(li for li in table.splitlines() if li.startswith(TARGETS[0][0]) and "of 3" in li)
    assert line.split()[-6:] == ["0.90", "1.00", "1.10", "2", "of", "3"]


def test_a_round_without_a_completed_request_counts_as_missed() -> None:
    http = http_result(exchange=100, stock=100, hashed=2, d8_ms=10, cc_agents_ms=10)
    with_rounds(http, "exchange_d1", [110, 120, 104])
    with_rounds(http, "stock_unhashed", [100, 100, 100])
    http["w1c1"]["exchange_d1"]["rounds"][1] = {"throughput_rps": 0.0, "mean_ms": None}
    row = compute_ratios(http, {})[0]
    assert row["rounds"] == [1.1, None, 1.04] and row["rounds_met"] == 2
    table = render({"in_process": {}, "http": http, "ratios": [row]})
    assert next(li for li in table.splitlines() if "of 3" in li).split()[-6:] == [
        "1.04",
        "1.07",
        "1.10",
        "2",
        "of",
        "3",
    ]


def test_rounds_that_do_not_pair_up_are_not_compared() -> None:
    http = http_result(exchange=100, stock=100, hashed=2, d8_ms=10, cc_agents_ms=10)
    with_rounds(http, "exchange_d1", [90, 110])
    with_rounds(http, "stock_unhashed", [100, 100, 100])
    row = compute_ratios(http, {})[0]
    assert row["rounds"] == [] and row["rounds_met"] == 0
    assert "round by round" not in render({"in_process": {}, "http": http, "ratios": [row]})


def test_information_ratios_have_no_target() -> None:
    http = http_result(
        exchange=120,
        stock=100,
        hashed=2,
        d8_ms=9,
        cc_agents_ms=11,
        cc_all_ms=12,
        stock_mw=80,
        two_workers=180,
        dpop_ms=1000 / 120 * 1.2,
    )
    inproc = {
        "exchange_d1": {"mean_ms": 6.0},
        "exchange_d1_dpop": {"mean_ms": 6.6},
        "exchange_d8": {"mean_ms": 6.6},
        "project_cc_all": {"mean_ms": 5.0},
        "project_cc_agents": {"mean_ms": 4.5},
        "stock_unhashed": {"mean_ms": 3.0},
    }
    rows = compute_ratios(http, inproc)
    assert all(r["target"] == "" and r["met"] is None for r in rows[len(TARGETS) :])
    v = values(rows)
    assert v["project_cc_all / stock_unhashed (mean latency)"] == 1.2
    assert v["exchange_d1 / stock_unhashed_mw (throughput)"] == 1.5
    assert v["project_cc_agents / stock_unhashed_mw (mean latency)"] == 0.88
    assert v["project_cc_all / stock_unhashed_mw (mean latency)"] == 0.96
    assert v["stock_unhashed_mw / stock_unhashed (mean latency)"] == 1.25
    assert v["exchange_d1, 4 clients: 2 workers / 1 worker (throughput)"] == 1.5
    assert v["stock_unhashed, 4 clients: 2 workers / 1 worker (throughput)"] == 1.0
    assert v["exchange_d1 / stock_unhashed (throughput, 2 workers, 4 clients)"] == 1.8
    assert v["in-process: exchange_d1 / project_cc_all (mean latency)"] == 1.2
    assert v["in-process: exchange_d8 / exchange_d1 (mean latency)"] == 1.1
    assert v["in-process: exchange_d1_dpop / exchange_d1 (mean latency)"] == 1.1
    assert v["exchange_d1 / exchange_d1_dpop (throughput; the client's proof signing included)"] == 1.2
    one_after_the_other = "in-process, one site after the other: "
    assert v[one_after_the_other + "project_cc_agents / stock_unhashed (mean latency)"] == 1.5
    assert v[one_after_the_other + "exchange_d1 / stock_unhashed (mean latency)"] == 2.0


def test_targets_compare_at_one_worker_and_one_client_only() -> None:
    """A 4-client or 2-worker measurement never stands in for the 1-worker, 1-client one."""
    http = http_result(exchange=110, stock=100, hashed=2, d8_ms=9, cc_agents_ms=10)
    del http["w1c1"]["stock_unhashed"]
    rows = compute_ratios(http, {})
    assert rows[0]["value"] is None and rows[0]["met"] is None
    assert rows[2]["value"] is None and rows[2]["met"] is None
    assert rows[1]["met"] is True and rows[3]["met"] is True and rows[4]["met"] is True


def test_missing_measurements_are_reported_not_invented() -> None:
    rows = compute_ratios({}, {})
    assert all(r["value"] is None and r["met"] is None for r in rows)
    table = render({"in_process": {}, "http": {}, "ratios": rows})
    assert "MISSED" not in table and " met" not in table


def test_table_names_every_scenario_and_target() -> None:
    http = http_result(110, 100, 2, 9, 10)
    result = {"in_process": {}, "http": http, "ratios": compute_ratios(http, {})}
    table = render(result)
    for name, description in DESCRIPTIONS.items():
        assert name in table and description in table
    for label, _, _ in TARGETS:
        assert label in table
    assert "HTTP 1w 1c" in table and "HTTP 2w 4c" in table and "MISSED" not in table
    assert table.count("  met") == len(TARGETS)


def test_table_says_missed_for_every_missed_target() -> None:
    http = http_result(exchange=50, stock=100, hashed=2, d8_ms=30, cc_agents_ms=20, dpop_ms=30)
    rows = compute_ratios(http, {})
    table = render({"in_process": {}, "http": http, "ratios": rows})
    missed = [line for line in table.splitlines() if line.endswith("MISSED")]
    assert len(missed) == len(TARGETS)
    for (label, _, _), line in zip(TARGETS, missed, strict=True):
        assert line.startswith(label)


def test_every_scenario_runs_on_a_server_of_its_kind() -> None:
    assert set(SCENARIOS) == set(DESCRIPTIONS)
    for name, scenario in SCENARIOS.items():
        server = SERVERS[scenario.server]
        assert server.stock == name.startswith("stock_"), name
        assert scenario.token in ("jwt", "opaque")
    # DOT's defaults issue opaque tokens; the project's "agents" mode keeps them for a
    # non-agent application, "all" gives it a JWT; an exchange always gives a JWT.
    assert {SCENARIOS[n].token for n in SCENARIOS if n.startswith("stock_")} == {"opaque"}
    assert SCENARIOS["project_cc_agents"].token == "opaque" and SCENARIOS["project_cc_all"].token == "jwt"
    assert dict(SERVERS[SCENARIOS["project_cc_agents"].server].env)["BENCH_JWT_ACCESS_TOKENS"] == "agents"
    for name in ("project_cc_all", "exchange_d1", "exchange_d8"):
        assert dict(SERVERS[SCENARIOS[name].server].env)["BENCH_JWT_ACCESS_TOKENS"] == "all"
    assert dict(SERVERS[SCENARIOS["stock_unhashed"].server].env)["BENCH_STOCK_MIDDLEWARE"] == "bare"
    assert dict(SERVERS[SCENARIOS["stock_hashed"].server].env)["BENCH_STOCK_MIDDLEWARE"] == "bare"
    assert dict(SERVERS[SCENARIOS["stock_unhashed_mw"].server].env)["BENCH_STOCK_MIDDLEWARE"] == "typical"


def _client() -> dict[str, str]:
    return {"client_id": secrets.token_urlsafe(8), "client_secret": secrets.token_urlsafe(32)}


def _basic_of(client: dict[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()


def test_each_scenario_authenticates_as_its_own_sites_client() -> None:
    agents = {f"a{i}": {**_client(), "uri": f"https://a{i}.example.com"} for i in range(1, 10)}
    site = {
        "agents": agents,
        "baselines": {"unhashed": _client()},
        "user_token": secrets.token_urlsafe(16),
        "user_token_dpop": secrets.token_urlsafe(16),
        "depth7_token": secrets.token_urlsafe(16),
    }
    stock = {"unhashed": _client(), "hashed": _client()}
    reqs = requests(site, stock)
    assert list(reqs) == list(SCENARIOS)
    expected = {
        "stock_unhashed": stock["unhashed"],
        "stock_unhashed_mw": stock["unhashed"],
        "stock_hashed": stock["hashed"],
        "exchange_d1": agents["a1"],
        "exchange_d1_dpop": agents["a1"],
        "exchange_d8": agents["a8"],
        "project_cc_agents": site["baselines"]["unhashed"],
        "project_cc_all": site["baselines"]["unhashed"],
    }
    for name, (body, headers) in reqs.items():
        assert headers["Authorization"] == _basic_of(expected[name]), name
        form = parse_qs(body.decode())
        if name.startswith("exchange"):
            token = {"exchange_d1": "user_token", "exchange_d1_dpop": "user_token_dpop"}.get(
                name, "depth7_token"
            )
            assert form["subject_token"] == [site[token]]
            assert form["audience"] == [agents["a9" if name == "exchange_d8" else "a2"]["uri"]]
        else:
            assert form == {"grant_type": ["client_credentials"]}
    # In-process (the project's site only): no stock scenario.
    assert list(requests(site)) == [n for n in SCENARIOS if not n.startswith("stock_")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_token_kind_tells_a_jws_from_an_opaque_token() -> None:
    from oauthlib.common import generate_token

    header = _b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": secrets.token_hex(4)}).encode())
    claims = _b64(json.dumps({"sub": secrets.token_hex(4)}).encode())
    assert token_kind(f"{header}.{claims}.{_b64(secrets.token_bytes(64))}") == "jwt"
    assert token_kind(generate_token()) == "opaque"  # django-oauth-toolkit's default generator
    assert token_kind(f"{_b64(b'not json')}.{claims}.x") == "opaque"
    assert token_kind(f"{_b64(json.dumps(['alg']).encode())}.{claims}.x") == "opaque"
    assert token_kind("a.b") == "opaque"


def test_stock_site_environment_carries_none_of_the_project() -> None:
    project_env = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(16),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_DEBUG": "0",
        "DATABASE_URL": "sqlite:////tmp/project.sqlite3",
        "DATABASE_TIMEOUT": "5",
        "IDP_ISSUER": "http://127.0.0.1:8000",
        "IDP_CLIENT_SECRET_HMAC_KEY": secrets.token_urlsafe(32),
        "GUNICORN_CMD_ARGS": "--worker-class sync",
        "PATH": os.environ.get("PATH", ""),
    }
    envs = server_envs(project_env, "sqlite:////tmp/stock.sqlite3")
    assert set(envs) == set(SERVERS)
    for name, env in envs.items():
        server = SERVERS[name]
        assert env["DJANGO_SETTINGS_MODULE"] == server.settings
        assert all(env[k] == v for k, v in server.env)
        for same in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_TIMEOUT", "GUNICORN_CMD_ARGS"):
            assert env[same] == project_env[same]
        if server.stock:
            assert env["DATABASE_URL"] == "sqlite:////tmp/stock.sqlite3"
            assert not [k for k in env if k.startswith("IDP_")]
            assert [k for k in env if k.startswith("BENCH_")] == ["BENCH_STOCK_MIDDLEWARE"]
        else:
            assert env["DATABASE_URL"] == project_env["DATABASE_URL"]
            assert env["IDP_CLIENT_SECRET_HMAC_KEY"] == project_env["IDP_CLIENT_SECRET_HMAC_KEY"]
            assert [k for k in env if k.startswith("BENCH_")] == ["BENCH_JWT_ACCESS_TOKENS"]


@given(st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=5, unique=True), st.integers(1, 8))
def test_interleaved_rounds_run_every_scenario_once_per_round_in_rotated_order(names, rounds) -> None:
    from bench.scenarios import interleaved

    order = list(interleaved(names, rounds))
    assert len(order) == len(names) * rounds
    per_round = [order[i * len(names) : (i + 1) * len(names)] for i in range(rounds)]
    assert all(sorted(r) == sorted(names) for r in per_round)
    assert [r[0] for r in per_round] == [names[i % len(names)] for i in range(rounds)]


@pytest.mark.rfc("9449-4.2")
def test_a_dpop_scenario_gets_a_new_proof_for_every_request_and_only_it() -> None:
    """The load generators sign a new proof (fresh ``jti``) for each request of a DPoP scenario,
    for the URL it is sent to, with a1's key; the other scenarios send none."""
    from bench.scenarios import proof_signers
    from delegation_idp.client import DPoPKey
    from delegation_idp.rfc9449 import MemoryReplayStore, ProofPolicy, check_proof

    key = DPoPKey.generate()
    signers = proof_signers({"agents": {"a1": {"dpop_jwk": key.private_jwk()}}})
    assert set(signers) == {n for n, s in SCENARIOS.items() if s.dpop} == {"exchange_d1_dpop"}
    policy = ProofPolicy(algorithms=("ES256",), replay=MemoryReplayStore())
    url = "http://127.0.0.1:8123/o/token/"
    proofs = [signers["exchange_d1_dpop"](url)["DPoP"] for _ in range(3)]
    for proof in proofs:  # three proofs, three first uses: none is a replay of another
        checked = check_proof([proof], method="POST", url=url, now=time.time(), policy=policy)
        assert checked.jkt == key.jkt
    assert proof_signers({"agents": {"a1": {}}}) == {}


def test_the_load_generator_signs_before_the_clock_starts() -> None:
    """``sign`` runs outside a request's measured latency: a slow signer leaves it unchanged."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench import load

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["DPoP"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    counter = iter(range(10_000))

    def slow_sign() -> dict[str, str]:
        time.sleep(0.05)
        return {"DPoP": f"proof-{next(counter)}"}

    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/o/token/"
        sample = load.run(url, b"x=1", {}, clients=1, seconds=0.5, warmup=1, sign=slow_sign)
    finally:
        server.shutdown()
        server.server_close()
    assert sample.ok >= 2 and len(set(seen)) == len(seen)  # a new proof for every request
    assert max(sample.latencies) < 0.05  # none of the signer's 50 ms is in a latency
