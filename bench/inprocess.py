"""In-process measurements (Django's test client, no HTTP, no gunicorn) and queries per
exchange; run as ``python -m bench.inprocess SITE_JSON ITERATIONS`` by bench.run."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def measure(site: dict[str, Any], iterations: int) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.load import Sample
    from bench.scenarios import requests

    client = Client()
    results: dict[str, Any] = {}
    for name, (body, headers) in requests(site).items():
        extra = {"HTTP_AUTHORIZATION": headers["Authorization"]}
        count = max(3, iterations // 20) if name == "cc_hashed" else iterations
        for _ in range(2):  # warm-up
            client.post("/o/token/", body, content_type="application/x-www-form-urlencoded", **extra)
        sample = Sample()
        began = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            response = client.post(
                "/o/token/", body, content_type="application/x-www-form-urlencoded", **extra
            )
            took = time.perf_counter() - t0
            if response.status_code == 200:
                sample.latencies.append(took)
            else:
                sample.errors[str(response.status_code)] = sample.errors.get(str(response.status_code), 0) + 1
        sample.elapsed = time.perf_counter() - began
        results[name] = sample.summary()
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(
                "/o/token/", body, content_type="application/x-www-form-urlencoded", **extra
            )
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
        site = json.load(handle)
    json.dump(measure(site, int(sys.argv[2])), sys.stdout)


if __name__ == "__main__":
    main()
