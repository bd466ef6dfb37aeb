"""Resource-server side: local validation by the DRF authentication class against RFC 7662
introspection over HTTP, and a DPoP-bound token with its proof beside a bearer token, in the
same run.

    .venv/bin/python -m bench.resource_bench            # about a minute
    .venv/bin/python -m bench.resource_bench --quick

A fresh provider (SQLite, one gunicorn sync worker, loopback HTTP; sync workers close every connection)
issues the seed's last-hop tokens (aud the resource server, act chain of three): bearer ones,
and as many bound to a DPoP key of mcp-server1's (the exchange requested with a proof, RFC
9449). Then, in this process, configured as the demo's resource server (no database, no
provider models):

* ``local``: ``DelegatedTokenAuthentication.authenticate`` with the JWKS cached
  (signature, header, claims, act chain; no revocation source configured);
* ``dpop``: the same with ``Authorization: DPoP`` and a fresh proof per request, signed
  beforehand (the client's cost is not the resource server's): the proof's checks of RFC
  9449 section 4.3, its key's binding, ``jti`` recorded in the site's Django cache (the
  demo's: local memory); rounds of ``local`` and ``dpop`` alternate, so both see the same
  machine; ``dpop_added_ms`` is the difference of the means (target: at most 0.3 ms);
* ``dpop+redis`` (with ``--redis-url``): the same, ``jti`` recorded in Redis (a Django Redis cache);
* ``introspection``: one RFC 7662 POST per token to the provider, authenticated
  as the resource server's client (keyed-hash secret, as agents have);
* ``local+introspection``: the authentication class with ``introspection="always"``.

It prints a table and one JSON document; the headlines are the ratio of the
introspection latency to the local one and the time DPoP adds. Not a test: nothing is asserted.
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


def interleaved(fns: dict[str, Any], tokens: dict[str, list[str]], iterations: int, rounds: int = 10) -> Any:
    """Each of ``fns`` timed for ``iterations`` calls in all, in alternating rounds."""
    latencies: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up: JWKS fetch, keys built, caches filled
        for token in tokens[name][:3]:
            fn(token)
    per_round = max(1, iterations // rounds)
    for r in range(rounds):
        for name, fn in fns.items():
            for i in range(per_round):
                token = tokens[name][(r * per_round + i) % len(tokens[name])]
                began = time.perf_counter()
                fn(token)
                latencies[name].append(time.perf_counter() - began)
    return latencies


def es256_verify_ms(count: int = 2000) -> float:
    """One bare ES256 signature check (``cryptography``), in this process, now: the unit that
    says how loaded the machine is, since a proof costs one such check and some parsing."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    data = b"x" * 400
    signature = private.sign(data, ec.ECDSA(hashes.SHA256()))
    public = private.public_key()
    began = time.perf_counter()
    for _ in range(count):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    return (time.perf_counter() - began) / count * 1000


def issue_tokens(issuer: str, cast: dict[str, Any], count: int, dpop_key: Any) -> tuple[list[str], list[str]]:
    """``count`` bearer last-hop tokens and ``count`` bound to ``dpop_key`` (mcp-server1's
    exchange requested with a proof of it at the token endpoint)."""
    import httpx

    from delegation_idp import jose
    from delegation_idp.client import AgentClient
    from example_project.demo_services.management.commands.demo import user_token

    agents = {n: AgentClient(issuer, a["client_id"], a["client_secret"]) for n, a in cast["agents"].items()}
    token = user_token(issuer, cast)
    token = agents["agent1"].exchange(token, audience=cast["agents"]["agent2"]["uri"]).access_token
    token = agents["agent2"].exchange(token, audience=cast["agents"]["mcp-server1"]["uri"]).access_token
    rs = cast["resource_server"]["uri"]
    bearer = [
        agents["mcp-server1"].exchange(token, audience=rs, use_cache=False).access_token for _ in range(count)
    ]
    mcp = cast["agents"]["mcp-server1"]
    endpoint = f"{issuer}/o/token/"
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "audience": rs,
    }
    bound = []
    with httpx.Client(timeout=30, auth=(mcp["client_id"], mcp["client_secret"])) as http:
        for _ in range(count):
            claims = {
                "jti": secrets.token_urlsafe(12),
                "htm": "POST",
                "htu": endpoint,
                "iat": int(time.time()),
            }
            response = http.post(endpoint, data=form, headers={"DPoP": jose.sign_proof(claims, dpop_key)})
            body = response.json()
            if response.status_code != 200 or body.get("token_type") != "DPoP":
                raise RuntimeError(f"the provider did not issue a DPoP-bound token: {body.get('error')}")
            bound.append(body["access_token"])
    return bearer, bound


def measure(
    issuer: str,
    cast: dict[str, Any],
    tokens: list[str],
    bound: list[str],
    key_json: str,
    iterations: int,
    redis_url: str | None = None,
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
    import httpx
    from rest_framework.test import APIRequestFactory

    from delegation_idp import jose
    from delegation_idp.resource_server import drf
    from delegation_idp.resource_server.validation import TokenValidator, _basic

    factory = APIRequestFactory()
    auth = drf.DelegatedTokenAuthentication()
    key = jose.load_key(key_json, "ES256")
    htu = "http://testserver/api/tasks/"

    def local(token: str) -> None:
        request = drf.Request(factory.get("/api/tasks/", HTTP_AUTHORIZATION=f"Bearer {token}"))
        _user, delegated = auth.authenticate(request)
        assert delegated.depth == 3

    def signed(token: str) -> tuple[str, str]:
        claims = {
            "jti": secrets.token_urlsafe(12),
            "htm": "GET",
            "htu": htu,
            "iat": int(time.time()),
            "ath": jose.token_hash(token),
        }
        return token, jose.sign_proof(claims, key)

    # A bound token and a fresh proof for each request, signed before the clock runs: the
    # client's work, not the resource server's (enough for both runs and their warm-ups).
    pairs = iter([signed(bound[i % len(bound)]) for i in range(3 * (iterations + 10))])

    def dpop(_unused: str) -> None:
        token, proof = next(pairs)
        request = drf.Request(factory.get("/api/tasks/", HTTP_AUTHORIZATION=f"DPoP {token}", HTTP_DPOP=proof))
        _user, delegated = auth.authenticate(request)
        assert delegated.depth == 3 and delegated.jkt == key.kid

    results: dict[str, Any] = {"es256_verify_ms": es256_verify_ms()}
    fns = {"local": local, "dpop": dpop}
    runs = interleaved(fns, {"local": tokens, "dpop": bound}, iterations)
    results.update({name: summary(latencies) for name, latencies in runs.items()})
    results["dpop_added_ms"] = results["dpop"]["mean_ms"] - results["local"]["mean_ms"]
    results["dpop_added_p50_ms"] = results["dpop"]["p50_ms"] - results["local"]["p50_ms"]
    if redis_url:
        from django.conf import settings
        from django.test import override_settings

        caches = {
            **settings.CACHES,
            "dpop": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
        }
        with override_settings(
            CACHES=caches, DELEGATION_IDP={**settings.DELEGATION_IDP, "DPOP_REPLAY_CACHE_ALIAS": "dpop"}
        ):
            from django.core.cache import caches as django_caches

            django_caches["dpop"].clear()
            runs = interleaved({"local": local, "dpop": dpop}, {"local": tokens, "dpop": bound}, iterations)
            results["dpop+redis"] = summary(runs["dpop"])
            results["local (redis run)"] = summary(runs["local"])
            results["dpop_redis_added_ms"] = (
                results["dpop+redis"]["mean_ms"] - results["local (redis run)"]["mean_ms"]
            )
            django_caches["dpop"].clear()

    http = httpx.Client(timeout=30)
    endpoint = f"{issuer}/o/introspect/"
    credentials = {"Authorization": _basic(rs["client_id"], rs["client_secret"])}

    def introspect(token: str) -> None:
        response = http.post(endpoint, data={"token": token}, headers=credentials)
        assert response.json().get("active") is True, (response.status_code, response.text[:300])

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
    parser.add_argument("--redis-url", default=None, help="also record DPoP jti values in this Redis")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    iterations = args.iterations or (100 if args.quick else 1000)
    if args.measure:
        # This process is the resource server: Django set up with its settings, no provider models.
        job = json.loads(sys.stdin.read())
        results = measure(
            job["issuer"],
            job["cast"],
            job["tokens"],
            job["bound"],
            job["key"],
            iterations,
            job.get("redis_url"),
        )
        print(json.dumps(results))
        return 0

    from example_project.demo_services.launch import free_port
    from tests.procs import cluster, manage, site_env

    with tempfile.TemporaryDirectory(prefix="resource_bench-") as tmp:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = site_env(
            Path(tmp),
            issuer=issuer,
            IDP_CLIENT_SECRET_HMAC_KEY=secrets.token_urlsafe(32),
            # latency, not the throttle: a thousand introspections a run exceed 600 a minute
            IDP_THROTTLE_RATES="client=1000000/min,address=1000000/min",
        )
        with cluster(Path(tmp), env) as procs:
            cast = json.loads(manage(env, "seed_live").stdout)
            procs.gunicorn(port, workers=1)
            # The user's side needs the provider's modules importable (not its database).
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
            import django

            django.setup()
            from delegation_idp import jose

            dpop_key = jose.generate_key("ES256")  # mcp-server1's DPoP key for this run only
            tokens, bound = issue_tokens(issuer, cast, 20, dpop_key)
            job = {
                "issuer": issuer,
                "cast": cast,
                "tokens": tokens,
                "bound": bound,
                "key": dpop_key.jwk.export_private(),
                "redis_url": args.redis_url,
            }
            child = subprocess.run(
                [sys.executable, "-m", "bench.resource_bench", "--measure", "--iterations", str(iterations)],
                input=json.dumps(job),
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
        "algorithm": "ES256 (tokens and proofs)",
        "dpop_replay_store": "the site's Django cache (local memory in the demo's settings)",
    }
    print(f"{'mode':<22}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}")
    modes = ("local", "dpop", "local (redis run)", "dpop+redis", "introspection", "local+introspection")
    for mode in (m for m in modes if m in results):
        row = results[mode]
        print(f"{mode:<22}{row['mean_ms']:>10.3f}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}")
    print(f"introspection / local = {results['ratio_introspection_over_local']:.1f}x")
    added, added_p50 = results["dpop_added_ms"], results["dpop_added_p50_ms"]
    print(f"DPoP adds {added:.3f} ms per request (mean; p50 {added_p50:.3f} ms)")
    verify = results["es256_verify_ms"]
    print(f"  one bare ES256 verify here: {verify:.3f} ms; DPoP adds {added / verify:.1f} of them")
    if "dpop_redis_added_ms" in results:
        print(f"DPoP with a Redis replay store adds {results['dpop_redis_added_ms']:.3f} ms per request")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
