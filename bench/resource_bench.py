"""Resource-server side: local validation by the DRF authentication class against RFC 7662
introspection over HTTP, with the same tokens, in the same run (issue 6).

    .venv/bin/python -m bench.resource_bench            # about a minute
    .venv/bin/python -m bench.resource_bench --quick

A fresh provider (SQLite, one gunicorn sync worker, loopback HTTP; sync workers close every connection)
issues the seed's last-hop tokens (aud the resource server, act chain of three).
Then, in this process, configured as the demo's resource server (no database,
no provider models):

* ``local``: ``DelegatedTokenAuthentication.authenticate`` with the JWKS cached
  (signature, header, claims, act chain; no revocation source configured);
* ``introspection``: one RFC 7662 POST per token to the provider, authenticated
  as the resource server's client (keyed-hash secret, as agents have);
* ``local+introspection``: the authentication class with ``introspection="always"``.

It prints a table and one JSON document; the headline is the ratio of the
introspection latency to the local one. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def timed(fn: Any, tokens: list[str], iterations: int) -> list[float]:
    for token in tokens[:3]:  # warm-up: JWKS fetch, connection set-up
        fn(token)
    latencies = []
    for i in range(iterations):
        token = tokens[i % len(tokens)]
        began = time.perf_counter()
        fn(token)
        latencies.append(time.perf_counter() - began)
    return latencies


def issue_tokens(issuer: str, cast: dict[str, Any], count: int) -> list[str]:
    from delegation_idp.client import AgentClient
    from example_project.demo_services.management.commands.demo import user_token

    agents = {n: AgentClient(issuer, a["client_id"], a["client_secret"]) for n, a in cast["agents"].items()}
    token = user_token(issuer, cast)
    token = agents["agent1"].exchange(token, audience=cast["agents"]["agent2"]["uri"]).access_token
    token = agents["agent2"].exchange(token, audience=cast["agents"]["mcp-server1"]["uri"]).access_token
    rs = cast["resource_server"]["uri"]
    return [
        agents["mcp-server1"].exchange(token, audience=rs, use_cache=False).access_token for _ in range(count)
    ]


def measure(issuer: str, cast: dict[str, Any], tokens: list[str], iterations: int) -> dict[str, Any]:
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
    import httpx
    from rest_framework.test import APIRequestFactory

    from delegation_idp.resource_server import drf
    from delegation_idp.resource_server.validation import TokenValidator, _basic

    factory = APIRequestFactory()
    auth = drf.DelegatedTokenAuthentication()

    def local(token: str) -> None:
        request = drf.Request(factory.get("/api/tasks/", HTTP_AUTHORIZATION=f"Bearer {token}"))
        _user, delegated = auth.authenticate(request)
        assert delegated.depth == 3

    http = httpx.Client(timeout=30)
    endpoint = f"{issuer}/o/introspect/"
    credentials = {"Authorization": _basic(rs["client_id"], rs["client_secret"])}

    def introspect(token: str) -> None:
        response = http.post(endpoint, data={"token": token}, headers=credentials)
        assert response.json()["active"] is True

    results = {"local": summary(timed(local, tokens, iterations))}
    results["introspection"] = summary(timed(introspect, tokens, iterations))
    config = drf.config_from_settings()
    from dataclasses import replace

    drf.set_validator(
        TokenValidator(
            replace(
                config, introspection="always", client_id=rs["client_id"], client_secret=rs["client_secret"]
            )
        )
    )
    results["local+introspection"] = summary(timed(local, tokens, iterations))
    results["ratio_introspection_over_local"] = (
        results["introspection"]["mean_ms"] / results["local"]["mean_ms"]
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer iterations)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    iterations = args.iterations or (100 if args.quick else 1000)
    if args.measure:
        # This process is the resource server: Django set up with its settings, no provider models.
        job = json.loads(sys.stdin.read())
        print(json.dumps(measure(job["issuer"], job["cast"], job["tokens"], iterations)))
        return 0

    from example_project.demo_services.launch import free_port
    from tests.procs import cluster, manage, site_env

    with tempfile.TemporaryDirectory(prefix="resource_bench-") as tmp:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = site_env(Path(tmp), issuer=issuer, IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32))
        with cluster(Path(tmp), env) as procs:
            cast = json.loads(manage(env, "seed_live").stdout)
            procs.gunicorn(port, workers=1)
            # The user's side needs the provider's modules importable (not its database).
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
            import django

            django.setup()
            tokens = issue_tokens(issuer, cast, 20)
            child = subprocess.run(
                [sys.executable, "-m", "bench.resource_bench", "--measure", "--iterations", str(iterations)],
                input=json.dumps({"issuer": issuer, "cast": cast, "tokens": tokens}),
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
                timeout=600,
            )
    if child.returncode != 0:
        print(child.stderr, file=sys.stderr)
        return 1
    results = json.loads(child.stdout)
    results["setup"] = {
        "provider": "gunicorn, 1 sync worker (no keep-alive), SQLite, loopback HTTP",
        "tokens": len(tokens),
        "iterations": iterations,
        "algorithm": "ES256",
    }
    print(f"{'mode':<22}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for mode in ("local", "introspection", "local+introspection"):
        row = results[mode]
        print(f"{mode:<22}{row['mean_ms']:>10.3f}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}")
    print(f"introspection / local = {results['ratio_introspection_over_local']:.1f}x")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
