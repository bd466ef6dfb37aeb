"""In-process measurements (Django's test client, no HTTP, no gunicorn) and database queries
per request; run as ``python -m bench.inprocess CASTS_JSON ITERATIONS ROUNDS NAME ...`` by
bench.run, once per server of bench.scenarios.SERVERS (with that server's settings and
environment) for its scenarios. CASTS_JSON holds ``{"site": ..., "stock": ...}``, the casts
bench.site and bench.stock_site printed."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def measure(
    site: dict[str, Any],
    iterations: int,
    rounds: int = 1,
    names: list[str] | None = None,
    stock: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.load import Sample
    from bench.scenarios import interleaved, proof_signers, requests

    client = Client()
    reqs = requests(site, stock)
    signers = proof_signers(site)
    names = list(reqs) if names is None else names
    samples = {name: Sample() for name in names}

    def fresh(name: str) -> dict[str, str]:
        """The headers a request needs anew (a DPoP proof), made before its clock starts."""
        signer = signers.get(name)
        return signer("http://testserver/o/token/") if signer else {}

    def post(name: str, extra: dict[str, str] | None = None) -> Any:
        body, headers = reqs[name]
        return client.post(
            "/o/token/",
            body,
            content_type="application/x-www-form-urlencoded",
            headers={"Authorization": headers["Authorization"], **(fresh(name) if extra is None else extra)},
        )

    for name in names:
        for _ in range(2):  # warm-up
            post(name)
    # The scenarios take turns in rounds (rotated order), as over HTTP.
    for name in interleaved(names, rounds):
        count = max(1, iterations // rounds)
        began = time.perf_counter()
        for _ in range(count):
            extra = fresh(name)
            t0 = time.perf_counter()
            response = post(name, extra)
            took = time.perf_counter() - t0
            if response.status_code == 200:
                samples[name].latencies.append(took)
            else:
                key = str(response.status_code)
                samples[name].errors[key] = samples[name].errors.get(key, 0) + 1
        samples[name].elapsed += time.perf_counter() - began
    results: dict[str, Any] = {}
    for name in names:
        results[name] = samples[name].summary()
        with CaptureQueriesContext(connection) as ctx:
            post(name)
        statements = [q["sql"] for q in ctx.captured_queries]
        control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT", "ROLLBACK")
        queries = [s for s in statements if not s.upper().startswith(control)]
        results[name]["queries"] = len(queries)
        results[name]["statements"] = len(statements)
        results[name]["query_sql"] = [q[:160] for q in queries]
    return results


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    django.setup()
    with open(sys.argv[1]) as handle:
        casts = json.load(handle)
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    names = sys.argv[4:] or None
    json.dump(measure(casts["site"], int(sys.argv[2]), rounds, names, casts.get("stock")), sys.stdout)


if __name__ == "__main__":
    main()
