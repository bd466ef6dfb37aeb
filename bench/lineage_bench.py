"""Benchmark of token lineage (not a timed test): records

* revoking a root token with 10,000 descendants (each with its AccessToken row);
* sweeping expired lineage records, with the sweep's peak Python memory for several
  table sizes side by side (default 100,000 and 1,000,000) - flat if the sweep is bounded.

Runs on a throw-away SQLite file by default, or on the database in ``DATABASE_URL``
(for example ``postgres://postgres@127.0.0.1:5432/bench_lineage``; it must exist and be
disposable: the script migrates it and deletes what it creates)::

    .venv/bin/python bench/lineage_bench.py
    .venv/bin/python bench/lineage_bench.py --sizes 100000 1000000 --json bench-lineage.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(database_url: str | None, workdir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    import django

    django.setup()
    from django.conf import settings

    # tests.settings names a separate test database; the benchmark uses the URL itself.
    settings.DATABASES["default"].pop("TEST", None)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _rows(prefix: str, count: int, now: Any, expired: bool) -> Any:
    from delegation_idp.models import TokenLineage

    exp = now - timedelta(days=400) if expired else now + timedelta(hours=1)
    for i in range(count):
        jti = f"{prefix}{i}"
        yield TokenLineage(
            jti=jti,
            root_jti=jti,
            path=jti,
            grant_type="client_credentials",
            subject="bench",
            client_id="bench",
            kid="bench",
            issued_at=exp - timedelta(hours=1),
            expires_at=exp,
        )


def bench_revoke(descendants: int = 10_000) -> dict[str, Any]:
    """A root, 100 children, and grandchildren under each up to ``descendants``."""
    import hashlib

    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    from delegation_idp.lineage import revocation
    from delegation_idp.models import TokenLineage

    Application = get_application_model()
    AccessToken = get_access_token_model()
    app = Application.objects.create(
        name="bench",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    now = timezone.now()
    expires = now + timedelta(hours=1)
    nodes: list[tuple[str, str, str, int]] = [("r", "", "r", 0)]
    children = 100
    per_child = (descendants - children) // children
    for c in range(children):
        cj = f"r-c{c}"
        nodes.append((cj, "r", f"r/{cj}", 1))
        for g in range(per_child):
            gj = f"r-c{c}-g{g}"
            nodes.append((gj, cj, f"r/{cj}/{gj}", 2))
    tokens = AccessToken.objects.bulk_create(
        [
            AccessToken(
                token=f"bench-{jti}",
                token_checksum=hashlib.sha256(f"bench-{jti}".encode()).hexdigest(),
                application=app,
                expires=expires,
                scope="read",
            )
            for jti, *_ in nodes
        ],
        batch_size=2000,
    )
    if tokens[0].pk is None:  # backends that do not return primary keys
        by_token = dict(AccessToken.objects.filter(application=app).values_list("token", "pk"))
        ids = [by_token[f"bench-{jti}"] for jti, *_ in nodes]
    else:
        ids = [t.pk for t in tokens]
    TokenLineage.objects.bulk_create(
        [
            TokenLineage(
                jti=jti,
                parent_jti=parent,
                root_jti="r",
                path=path,
                depth=depth,
                grant_type="bench",
                subject="bench",
                client_id=app.client_id,
                kid="bench",
                issued_at=now,
                expires_at=expires,
                access_token_id=token_id,
            )
            for (jti, parent, path, depth), token_id in zip(nodes, ids, strict=True)
        ],
        batch_size=2000,
    )
    started = time.perf_counter()
    revoked = revocation.revoke_subtree("r", reason="bench")
    seconds = time.perf_counter() - started
    assert len(revoked) == len(nodes)
    assert not AccessToken.objects.filter(application=app).exists()
    TokenLineage.objects.filter(root_jti="r").delete()
    app.delete()
    return {"descendants": len(nodes) - 1, "seconds": round(seconds, 3)}


def bench_sweep(size: int, batch_size: int) -> dict[str, Any]:
    from django.utils import timezone

    from delegation_idp.lineage import retention
    from delegation_idp.models import TokenLineage

    now = timezone.now()
    TokenLineage.objects.bulk_create(_rows(f"s{size}-", size, now, expired=True), batch_size=5000)
    TokenLineage.objects.bulk_create(_rows(f"live{size}-", 100, now, expired=False), batch_size=5000)
    tracemalloc.start()
    started = time.perf_counter()
    result = retention.sweep_expired(batch_size=batch_size)
    seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.lineage == size, result
    assert TokenLineage.objects.filter(jti__startswith=f"live{size}-").count() == 100
    TokenLineage.objects.filter(jti__startswith=f"live{size}-").delete()
    return {
        "records": size,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "records_per_second": round(size / seconds),
        "peak_python_memory_kib": round(peak / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--descendants", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        setup(args.database_url, Path(workdir))
        from django.db import connection

        results: dict[str, Any] = {"database": connection.vendor}
        results["revoke_subtree"] = bench_revoke(args.descendants)
        print(
            f"revoke a root with {results['revoke_subtree']['descendants']} descendants: "
            f"{results['revoke_subtree']['seconds']} s"
        )
        results["sweep"] = []
        for size in args.sizes:
            row = bench_sweep(size, args.batch_size)
            results["sweep"].append(row)
            print(
                f"sweep {row['records']:>9} expired records: {row['seconds']:>8} s "
                f"({row['records_per_second']} /s), peak Python memory {row['peak_python_memory_kib']} KiB"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
