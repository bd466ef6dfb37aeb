"""Orchestrates one benchmark run: build the site, measure in-process, then over HTTP
against 1 and then 2 gunicorn workers; print the table and write JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import load
from bench.scenarios import DESCRIPTIONS, interleaved, requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# (name, numerator, denominator, how to compare, target): ratios, since absolute times drift.
TARGETS = [
    ("exchange / unhashed client credentials (throughput)", ">=", 0.8),
    ("exchange / hashed client credentials (throughput)", ">=", 40.0),
    ("depth 8 / depth 1 (mean latency)", "<=", 1.15),
    ("2 workers / 1 worker (exchange throughput, 4 clients)", ">=", 1.7),
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each HTTP measurement")
    parser.add_argument("--iterations", type=int, default=200, help="requests per in-process measurement")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleave the scenarios in this many rounds, so drift on a shared machine "
        "spreads over all of them instead of favouring whichever ran first",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 s, 30 iterations)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); a fresh "
        "database is created on it and dropped afterwards. Default: a fresh SQLite file.",
    )
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (default sync)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON result")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.iterations, args.rounds = 1.0, 30, 1
    args.rounds = max(1, args.rounds)
    return args


@contextmanager
def database(url: str | None, tmp: Path) -> Iterator[str]:
    """A fresh database URL for this run, removed afterwards."""
    if not url:
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
        return
    import psycopg
    from psycopg import sql

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def python_module(env: dict[str, str], module: str, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise SystemExit(f"{module} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def compute_ratios(http: dict[str, Any], inproc: dict[str, Any]) -> list[dict[str, Any]]:
    def rps(workers: int, clients: int, name: str) -> float | None:
        return http.get(f"w{workers}c{clients}", {}).get(name, {}).get("throughput_rps")

    def mean(workers: int, clients: int, name: str) -> float | None:
        return http.get(f"w{workers}c{clients}", {}).get(name, {}).get("mean_ms")

    values = [
        ratio(rps(1, 1, "exchange_d1"), rps(1, 1, "cc_unhashed")),
        ratio(rps(1, 1, "exchange_d1"), rps(1, 1, "cc_hashed")),
        ratio(mean(1, 1, "exchange_d8"), mean(1, 1, "exchange_d1")),
        ratio(rps(2, 4, "exchange_d1"), rps(1, 4, "exchange_d1")),
    ]
    rows = []
    for (label, op, target), value in zip(TARGETS, values, strict=True):
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        rows.append({"ratio": label, "value": value, "target": f"{op} {target}", "met": met})
    extra = [
        (
            "exchange / unhashed client credentials (throughput, 2 workers, 4 clients)",
            ratio(rps(2, 4, "exchange_d1"), rps(2, 4, "cc_unhashed")),
        ),
        (
            "2 workers / 1 worker (unhashed client credentials, 4 clients)",
            ratio(rps(2, 4, "cc_unhashed"), rps(1, 4, "cc_unhashed")),
        ),
        (
            "in-process: exchange / unhashed client credentials (mean latency, inverse)",
            ratio(inproc.get("cc_unhashed", {}).get("mean_ms"), inproc.get("exchange_d1", {}).get("mean_ms")),
        ),
        (
            "in-process: depth 8 / depth 1 (mean latency)",
            ratio(inproc.get("exchange_d8", {}).get("mean_ms"), inproc.get("exchange_d1", {}).get("mean_ms")),
        ),
    ]
    rows += [{"ratio": label, "value": value, "target": "", "met": None} for label, value in extra]
    return rows


def render(result: dict[str, Any]) -> str:
    lines = []
    head = (
        f"{'scenario':<14}{'where':<16}{'req/s':>9}{'mean ms':>10}{'p50 ms':>9}{'p99 ms':>9}{'n':>7}  errors"
    )
    lines += [head, "-" * len(head)]

    def row(name: str, where: str, s: dict[str, Any]) -> str:
        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

        return (
            f"{name:<14}{where:<16}{f(s.get('throughput_rps')):>9}{f(s.get('mean_ms')):>10}"
            f"{f(s.get('p50_ms')):>9}{f(s.get('p99_ms')):>9}{s.get('requests', 0):>7}"
            f"  {s.get('errors') or ''}"
        )

    for name in DESCRIPTIONS:
        lines.append(row(name, "in-process", result["in_process"].get(name, {})))
        for config, values in result["http"].items():
            workers, clients = config[1], config[3]
            lines.append(row(name, f"HTTP {workers}w {clients}c", values.get(name, {})))
    lines.append("")
    lines.append("database queries per request (in-process; transaction and savepoint statements excluded):")
    for name in DESCRIPTIONS:
        s = result["in_process"].get(name, {})
        lines.append(f"  {name:<14}{s.get('queries', '-'):>4}   ({s.get('statements', '-')} statements)")
    lines.append("")
    lines.append(f"{'ratio':<78}{'value':>8}  target")
    for r in result["ratios"]:
        mark = "" if r["met"] is None else ("  met" if r["met"] else "  MISSED")
        value = "-" if r["value"] is None else f"{r['value']:.2f}"
        lines.append(f"{r['ratio']:<78}{value:>8}  {r['target']}{mark}")
    lines.append("")
    lines.append("scenarios: " + "; ".join(f"{k} = {v}" for k, v in DESCRIPTIONS.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sys.path.insert(0, str(ROOT))
    from tests.procs import cluster, site_env

    with tempfile.TemporaryDirectory(prefix="delegation-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with database(args.database_url, tmp) as db_url:
            env = site_env(
                tmp,
                issuer="http://127.0.0.1:8000",
                database_url=db_url,
                DJANGO_SETTINGS_MODULE="bench.settings",
                IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32),
                PYTHONPATH=str(ROOT),
            )
            if args.worker_class != "sync":
                env["GUNICORN_CMD_ARGS"] = f"--worker-class {args.worker_class} --threads 1"
            print(f"building the site ({'PostgreSQL' if args.database_url else 'SQLite'}) ...", flush=True)
            with cluster(tmp, env) as procs:
                site = python_module(env, "bench.site")
                site_file = tmp / "site.json"
                site_file.write_text(json.dumps(site))
                print("measuring in-process ...", flush=True)
                in_process = python_module(
                    env, "bench.inprocess", str(site_file), str(args.iterations), str(args.rounds)
                )
                http = measure_http(procs, site, args.seconds, args.rounds)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "database": "postgresql" if args.database_url else "sqlite (WAL)",
            "worker_class": args.worker_class,
            "seconds_per_http_measurement": args.seconds,
            "in_process_iterations": args.iterations,
            "interleaved_rounds": args.rounds,
            "stored_secret_formats": {
                "cc_hashed": site["baselines"]["hashed"]["stored"].split("$")[0],
                "cc_unhashed": "plain",
                "agents": site["agents"]["a1"]["stored"],
            },
        },
        "in_process": in_process,
        "http": http,
    }
    result["ratios"] = compute_ratios(http, in_process)
    print()
    print(render(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


def measure_http(procs: Any, site: dict[str, Any], seconds: float, rounds: int) -> dict[str, Any]:
    """Every scenario against 1 and then 2 workers, at 1 and 4 clients. Within one
    configuration the scenarios take turns in short rounds (each round in a rotated
    order), so the ratios compare times measured side by side."""
    http: dict[str, Any] = {}
    reqs = requests(site)
    names = list(reqs)
    for workers in (1, 2):
        label = f"bench-gunicorn-{workers}w"
        url = procs.gunicorn(workers=workers, name=label)
        print(f"measuring over HTTP with {workers} worker(s) ...", flush=True)
        for clients in (1, 4):
            samples = {name: load.Sample() for name in names}
            for name in interleaved(names, rounds):
                body, headers = reqs[name]
                samples[name].merge(
                    load.run(f"{url}/o/token/", body, headers, clients=clients, seconds=seconds / rounds)
                )
            http[f"w{workers}c{clients}"] = {name: samples[name].summary() for name in names}
        procs.stop(label)
    return http


__all__ = ["main"]
