"""The cost of the Prometheus metrics per token exchange: the same exchange with metrics off and
on, measured side by side in one run.

    .venv/bin/python -m bench.metrics_bench            # about two minutes
    .venv/bin/python -m bench.metrics_bench --quick    # a smoke run

One bench site (bench/settings.py, bench/site.py's cast) in a fresh database, served by three
gunicorn instances on that database with the command line of bench.run (one sync worker each,
DEBUG off), which differ only in their environment:

* ``off``: the default, ``METRICS`` off;
* ``on``: ``IDP_METRICS=1`` (one process: counts in memory);
* ``on-multiprocess``: ``IDP_METRICS=1`` and ``PROMETHEUS_MULTIPROC_DIR`` (counts in files, as
  several gunicorn workers need them).

The exchange at depth 1 (bench.scenarios' ``exchange_d1``) takes turns on the three, in many
short rounds each in a rotated order, at one client. Then, in-process (Django's test client, no
HTTP), the same exchange with ``METRICS`` switched off and on between rounds in one process,
once in memory and once with a multiprocess directory. The target: metrics on cost at most 3
percent of an exchange (mean latency, on / off <= 1.03). It prints a table and writes JSON to
``bench/results/``. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402
from bench.run import GUNICORN_FLAGS, RESULTS, python_module  # noqa: E402
from bench.scenarios import interleaved, requests  # noqa: E402

SCENARIO = "exchange_d1"
TARGET = 1.03
CONFIGS = ("off", "on", "on-multiprocess")


def config_env(env: dict[str, str], config: str, tmp: Path) -> dict[str, str]:
    """The environment of one configuration (the metrics token is random: nothing scrapes
    but the final check)."""
    env = {k: v for k, v in env.items() if k not in ("IDP_METRICS", "PROMETHEUS_MULTIPROC_DIR")}
    if config != "off":
        env["IDP_METRICS"] = "1"
    if config == "on-multiprocess":
        directory = tmp / f"prometheus-{secrets.token_hex(4)}"
        directory.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return env


def start(procs: Any, name: str, env: dict[str, str]) -> str:
    from tests.conftest import free_port
    from tests.procs import wait_http

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "example_project.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    procs._spawn(f"metrics-bench-{name}", [*cmd, "--workers", "1", *GUNICORN_FLAGS], env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/o/token/")
    return url


def counted_exchanges(url: str, token: str) -> float:
    """Granted exchanges the instance's own /metrics reports (so "on" was on)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = load.request_once(f"{url}/metrics", "GET", None, {"Authorization": f"Bearer {token}"})
    if status != 200:
        return -1.0
    return sum(
        s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "delegation_idp_requests_total" and s.labels.get("result") == "granted"
    )


def measure_http(
    urls: dict[str, str], body: bytes, headers: dict[str, str], seconds: float, rounds: int
) -> Any:
    samples = {name: load.Sample() for name in urls}
    for name in interleaved(list(urls), rounds):
        samples[name].merge(
            load.run(f"{urls[name]}/o/token/", body, headers, clients=1, seconds=seconds / rounds)
        )
    return {name: sample.summary() for name, sample in samples.items()}


def inprocess(casts_file: str, iterations: int, rounds: int) -> dict[str, Any]:
    """In this process: the exchange with METRICS off and on, switched between rounds."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    from django.conf import settings
    from django.test import Client, override_settings

    from delegation_idp import audit
    from delegation_idp.provider import metrics

    # The time spent in the metrics' own code (the request_audited signal and its receiver, the
    # policy look-ups' counts) during each request: the direct cost. Its median per request is
    # free of the run's noise (a request preempted inside it, on a busy machine, moves the mean).
    spent = [0.0]

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - began

        return wrapper

    audit._audited = timed(audit._audited)  # type: ignore[method-assign]
    metrics.observe_policy_lookup = timed(metrics.observe_policy_lookup)  # type: ignore[method-assign]
    site = json.loads(Path(casts_file).read_text())["site"]
    body, headers = requests(site)[SCENARIO]
    client = Client()

    def post() -> int:
        return client.post(
            "/o/token/",
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=headers["Authorization"],
        ).status_code

    options = {
        "off": {**settings.DELEGATION_IDP, "METRICS": False},
        "on": {**settings.DELEGATION_IDP, "METRICS": True},
    }
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    direct: dict[str, list[float]] = {"off": [], "on": []}
    for name in options:
        with override_settings(DELEGATION_IDP=options[name]):
            for _ in range(5):  # warm-up
                post()
    per_round = max(1, iterations // rounds)
    for name in interleaved(list(options), rounds):
        with override_settings(DELEGATION_IDP=options[name]):
            for _ in range(per_round):
                spent[0] = 0.0
                began = time.perf_counter()
                status = post()
                took = time.perf_counter() - began
                if status != 200:
                    raise SystemExit(f"metrics bench: the exchange answered {status}")
                latencies[name].append(took)
                direct[name].append(spent[0])
    return {
        name: {
            "requests": len(values),
            "mean_ms": round(statistics.fmean(values) * 1000, 4),
            "p50_ms": round(statistics.median(values) * 1000, 4),
            "metrics_code_us": round(statistics.median(direct[name]) * 1e6, 2),
            "metrics_code_mean_us": round(statistics.fmean(direct[name]) * 1e6, 2),
        }
        for name, values in latencies.items()
    }


def ratio(on: dict[str, Any], off: dict[str, Any], key: str) -> float | None:
    return round(on[key] / off[key], 4) if on.get(key) and off.get(key) else None


def render(result: dict[str, Any]) -> str:
    lines = [f"{'configuration':<34}{'req/s':>9}{'mean ms':>10}{'p50 ms':>9}{'p99 ms':>9}{'n':>8}"]
    lines.append("-" * len(lines[0]))

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for name, s in result["http"].items():
        lines.append(
            f"{'HTTP ' + name:<34}{f(s.get('throughput_rps')):>9}{f(s.get('mean_ms')):>10}"
            f"{f(s.get('p50_ms')):>9}{f(s.get('p99_ms')):>9}{s.get('requests', 0):>8}"
        )
    for mode, pair in result["in_process"].items():
        for name, s in pair.items():
            label = f"in-process {mode} {name}"
            lines.append(
                f"{label:<34}{'':>9}{f(s['mean_ms']):>10}{f(s['p50_ms']):>9}{'':>9}{s['requests']:>8}"
            )
    lines.append("")
    for row in result["ratios"]:
        met = "" if row["met"] is None else ("  met" if row["met"] else "  MISSED")
        value = "-" if row["value"] is None else f"{row['value']:.3f}"
        lines.append(f"{row['ratio']:<60}{value:>8}  {row['target']}{met}")
    lines.append("")
    for mode, pair in result["in_process"].items():
        on, off = pair["on"], pair["off"]
        share = (on["metrics_code_us"] - off["metrics_code_us"]) / (off["p50_ms"] * 1000)
        lines.append(
            f"metrics code per exchange (median), in-process {mode}: {on['metrics_code_us']:.1f} us on, "
            f"{off['metrics_code_us']:.1f} us off; on minus off = {share:.2%} of a median exchange"
        )
    lines.append(f"granted requests each instance's /metrics counted: {result['counted']}")
    return "\n".join(lines)


def ratios(http: dict[str, Any], inproc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for label, value in (
        ("HTTP on / off (mean latency)", ratio(http["on"], http["off"], "mean_ms")),
        ("HTTP on-multiprocess / off (mean latency)", ratio(http["on-multiprocess"], http["off"], "mean_ms")),
        (
            "in-process on / off (mean latency)",
            ratio(inproc["memory"]["on"], inproc["memory"]["off"], "mean_ms"),
        ),
        (
            "in-process, multiprocess dir: on / off (mean latency)",
            ratio(inproc["multiprocess"]["on"], inproc["multiprocess"]["off"], "mean_ms"),
        ),
    ):
        rows.append(
            {
                "ratio": label,
                "value": value,
                "target": f"<= {TARGET}",
                "met": None if value is None else value <= TARGET,
            }
        )
    for label, value in (
        ("HTTP on / off (median latency)", ratio(http["on"], http["off"], "p50_ms")),
        (
            "HTTP on-multiprocess / off (median latency)",
            ratio(http["on-multiprocess"], http["off"], "p50_ms"),
        ),
        (
            "in-process on / off (median latency)",
            ratio(inproc["memory"]["on"], inproc["memory"]["off"], "p50_ms"),
        ),
        (
            "in-process, multiprocess dir: on / off (median latency)",
            ratio(inproc["multiprocess"]["on"], inproc["multiprocess"]["off"], "p50_ms"),
        ),
    ):
        rows.append({"ratio": label, "value": value, "target": "", "met": None})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="HTTP time per configuration")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--iterations", type=int, default=3000, help="in-process requests per configuration")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--inprocess", nargs=3, metavar=("CASTS", "ITERATIONS", "ROUNDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.inprocess:
        casts, iterations, rounds = args.inprocess
        json.dump(inprocess(casts, int(iterations), int(rounds)), sys.stdout)
        return 0
    if args.quick:
        args.seconds, args.rounds, args.iterations = 3.0, 3, 120
    from tests.procs import cluster, site_env

    with tempfile.TemporaryDirectory(prefix="delegation-metrics-bench-") as tmpdir:
        tmp = Path(tmpdir)
        token = secrets.token_urlsafe(32)
        env = site_env(
            tmp,
            issuer="http://127.0.0.1:8000",
            DJANGO_SETTINGS_MODULE="bench.settings",
            IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32),
            IDP_METRICS_TOKEN=token,
            PYTHONPATH=str(ROOT),
        )
        print("building the site (SQLite) ...", flush=True)
        with cluster(tmp, env) as procs:
            site = python_module(env, "bench.site")
            casts_file = tmp / "casts.json"
            casts_file.write_text(json.dumps({"site": site}))
            body, headers = requests(site)[SCENARIO]
            urls = {name: start(procs, name, config_env(env, name, tmp)) for name in CONFIGS}
            for name, url in urls.items():
                status, answer = load.request_once(f"{url}/o/token/", "POST", body, headers)
                if status != 200:
                    raise SystemExit(f"metrics bench: {name} answered {status}: {answer[:300]!r}")
            print(f"measuring over HTTP ({args.seconds:g} s per configuration, {args.rounds} rounds) ...")
            http = measure_http(urls, body, headers, args.seconds, args.rounds)
            counted = {name: counted_exchanges(url, token) for name, url in urls.items()}
            print("measuring in-process ...", flush=True)
            inproc = {}
            for mode in ("memory", "multiprocess"):
                mode_env = config_env(env, "on-multiprocess" if mode == "multiprocess" else "off", tmp)
                inproc[mode] = python_module(
                    mode_env,
                    "bench.metrics_bench",
                    "--inprocess",
                    str(casts_file),
                    str(args.iterations),
                    str(args.rounds),
                )
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "config": {
            "scenario": SCENARIO,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "iterations": args.iterations,
        },
        "http": http,
        "in_process": inproc,
        "counted": counted,
    }
    result["ratios"] = ratios(http, inproc)
    print()
    print(render(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"metrics-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
