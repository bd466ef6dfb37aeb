"""Token Status Lists (draft-ietf-oauth-status-list): list sizes, the time to sign a list
again, and the resource side's validation with and without the status-list check beside
RFC 7662 introspection, in the same run.

    .venv/bin/python -m bench.statuslist_bench            # a few minutes
    .venv/bin/python -m bench.statuslist_bench --quick

Sizes and signing (this process, no database): for lists of 100,000 and 1,000,000 entries
with a few revoked (0, 10, 100 and 1,000, at random indices, as allocation spreads them), the
compressed ``lst`` and the whole signed Status List Token in bytes, and the time to build the
byte array, compress it at level 9 and sign it with ES256 (what
:func:`delegation_idp.provider.status_lists.sign_list` does after reading the revoked rows).

Validation (a fresh provider: SQLite, one gunicorn sync worker, loopback HTTP; then this
machine as the demo's resource server, with no database): the seed's last-hop tokens,
validated by :class:`~delegation_idp.resource_server.validation.TokenValidator`

* ``local``: signature, claims, ``act`` chain, no revocation check;
* ``status_list``: the same with ``revocation_modes=("status_list",)``: the list fetched once
  (its ``ttl`` is not reached during a round), each token's bit read from the cached copy;
* ``introspection``: the same with ``revocation_modes=("introspection",)``: one RFC 7662 POST
  per request;
* ``redis`` (with ``--redis-url``): the same with ``revocation_modes=("redis",)``: one ``EXISTS``
  in the revocation set per request.

Rounds of the three alternate, so each sees the same machine. The headlines: how much the
status-list check adds to local validation, and how many times faster than introspection it
stays (target: at least 8). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.resource_bench import interleaved, issue_tokens, summary  # noqa: E402

SIZES = (100_000, 1_000_000)
REVOKED = (0, 10, 100, 1000)


def sizes_and_signing(repeat: int) -> list[dict[str, Any]]:
    from delegation_idp import jose
    from delegation_idp.statuslist import TYP, compress, encode, list_token_claims

    key = jose.generate_key("ES256")
    rows = []
    rng = random.Random(19)
    for size in SIZES:
        for revoked in REVOKED:
            indices = rng.sample(range(size), revoked)
            timings = []
            for _ in range(repeat):
                began = time.perf_counter()
                lst = compress(encode(size, indices))
                claims = list_token_claims(
                    uri="https://idp.example.com/o/statuslists/abcdefghijklmnopqrstuv",
                    issuer="https://idp.example.com",
                    iat=int(time.time()),
                    exp=int(time.time()) + 3600,
                    ttl=60,
                    lst=lst,
                    aggregation_uri="https://idp.example.com/o/statuslists/",
                )
                token = jose.sign(claims, key, typ=TYP)
                timings.append(time.perf_counter() - began)
            rows.append(
                {
                    "entries": size,
                    "revoked": revoked,
                    "lst_bytes": len(lst),
                    "token_bytes": len(token),
                    "sign_ms": min(timings) * 1000,
                    "sign_mean_ms": sum(timings) / len(timings) * 1000,
                }
            )
    return rows


def measure(
    issuer: str, cast: dict[str, Any], tokens: list[str], iterations: int, redis_url: str | None = None
) -> dict[str, Any]:
    rs = cast["resource_server"]
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.demo_services.resource_settings",
            "IDP_ISSUER": issuer,
            "RESOURCE_SERVER_URI": rs["uri"],
        }
    )
    import django

    django.setup()
    from dataclasses import replace

    from delegation_idp.resource_server import site
    from delegation_idp.resource_server.validation import TokenValidator

    config = site.config_from_settings()
    plain = TokenValidator(
        replace(config, revocation_redis_url=None, introspection="never", revocation_modes=None)
    )
    listed = TokenValidator(replace(config, revocation_redis_url=None, revocation_modes=("status_list",)))
    introspected = TokenValidator(
        replace(
            config,
            revocation_redis_url=None,
            revocation_modes=("introspection",),
            client_id=rs["client_id"],
            client_secret=rs["client_secret"],
        )
    )

    def check(validator: TokenValidator) -> Any:
        def run(token: str) -> None:
            assert validator.validate(token).depth == 3

        return run

    fns = {"local": check(plain), "status_list": check(listed), "introspection": check(introspected)}
    if redis_url:
        fns["redis"] = check(
            TokenValidator(replace(config, revocation_redis_url=redis_url, revocation_modes=("redis",)))
        )
    runs = interleaved(fns, dict.fromkeys(fns, tokens), iterations)
    results: dict[str, Any] = {name: summary(latencies) for name, latencies in runs.items()}
    results["status_list_added_ms"] = results["status_list"]["mean_ms"] - results["local"]["mean_ms"]
    results["ratio_introspection_over_status_list"] = (
        results["introspection"]["mean_ms"] / results["status_list"]["mean_ms"]
    )
    results["status_list_fetches"] = listed.status_lists.fetches
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer iterations)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--redis-url", default=None, help="also time the Redis revocation set's check")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    iterations = args.iterations or (150 if args.quick else 1500)
    if args.measure:
        job = json.loads(sys.stdin.read())
        print(
            json.dumps(measure(job["issuer"], job["cast"], job["tokens"], iterations, job.get("redis_url")))
        )
        return 0

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    import django

    django.setup()
    lists = sizes_and_signing(repeat=2 if args.quick else 5)

    from example_project.demo_services.launch import free_port
    from tests.procs import cluster, manage, site_env

    with tempfile.TemporaryDirectory(prefix="statuslist_bench-") as tmp:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = site_env(
            Path(tmp),
            issuer=issuer,
            IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32),
            IDP_THROTTLE_RATES="client=1000000/min,address=1000000/min",
            # the lists' ttl outlasts the run: the check reads the cached copy, as it does within a ttl
            IDP_STATUS_LIST_TTL="1500",
        )
        with cluster(Path(tmp), env) as procs:
            cast = json.loads(manage(env, "seed_live").stdout)
            procs.gunicorn(port, workers=1)
            from delegation_idp import jose

            tokens, _bound = issue_tokens(issuer, cast, 20, jose.generate_key("ES256"))
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.statuslist_bench",
                    "--measure",
                    "--iterations",
                    str(iterations),
                ],
                input=json.dumps(
                    {"issuer": issuer, "cast": cast, "tokens": tokens, "redis_url": args.redis_url}
                ),
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
                timeout=900,
            )
    if child.returncode != 0:
        print(child.stderr, file=sys.stderr)
        return 1
    results = json.loads(child.stdout)
    results["lists"] = lists
    results["setup"] = {
        "provider": "gunicorn, 1 sync worker (no keep-alive), SQLite, loopback HTTP",
        "tokens": len(tokens),
        "iterations": iterations,
        "algorithm": "ES256",
    }
    print(f"{'entries':>10}{'revoked':>9}{'lst bytes':>11}{'token bytes':>13}{'sign ms':>10}")
    for row in lists:
        print(
            f"{row['entries']:>10}{row['revoked']:>9}{row['lst_bytes']:>11}{row['token_bytes']:>13}"
            f"{row['sign_ms']:>10.2f}"
        )
    print(f"\n{'mode':<16}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for mode in (m for m in ("local", "status_list", "redis", "introspection") if m in results):
        row = results[mode]
        print(f"{mode:<16}{row['mean_ms']:>10.3f}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}")
    print(f"status-list check adds {results['status_list_added_ms']:.3f} ms per request (mean)")
    print(
        f"introspection / status_list = {results['ratio_introspection_over_status_list']:.1f}x (target >= 8)"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
