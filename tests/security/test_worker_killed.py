"""Fault behaviour of the sweep: a Celery worker killed mid-sweep loses nothing,
and the next run finishes the job. Real worker process, real Redis broker."""

from __future__ import annotations

import signal
import sqlite3
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery

from tests.conftest import free_port
from tests.procs import cluster, manage, site_env

pytestmark = pytest.mark.integration

EXPIRED, LIVE = 20_000, 50
CREATE = f"""
from datetime import timedelta
from django.utils import timezone
from delegation_idp.models import TokenLineage as T
old, live = timezone.now() - timedelta(days=400), timezone.now() + timedelta(hours=1)
def row(prefix, i, when):
    jti = f"{{prefix}}{{i}}"
    return T(jti=jti, root_jti=jti, path=jti, grant_type="client_credentials",
             subject="s", client_id="c", kid="k", issued_at=when, expires_at=when)
T.objects.bulk_create([row("old", i, old) for i in range({EXPIRED})], batch_size=2000)
T.objects.bulk_create([row("live", i, live) for i in range({LIVE})])
"""


@pytest.fixture
def broker(redis_url: str):
    url = urlunsplit(urlsplit(redis_url)._replace(path="/9"))
    store = redis.Redis.from_url(url)
    store.flushdb()
    yield url
    store.flushdb()
    store.close()


def counts(database: Any) -> tuple[int, int]:
    with sqlite3.connect(database, timeout=60) as db:
        old = db.execute("SELECT COUNT(*) FROM delegation_idp_tokenlineage WHERE jti LIKE 'old%'").fetchone()[
            0
        ]
        live = db.execute(
            "SELECT COUNT(*) FROM delegation_idp_tokenlineage WHERE jti LIKE 'live%'"
        ).fetchone()[0]
    return old, live


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_killed_mid_sweep_loses_nothing_and_the_next_run_finishes(tmp_path, broker):
    env = site_env(tmp_path, issuer=f"http://127.0.0.1:{free_port()}", broker_url=broker)
    database = tmp_path / "site.sqlite3"
    app = Celery("sweep-kill-test", broker=broker)
    with cluster(tmp_path, env) as procs:
        manage(env, "shell", "-c", CREATE)
        assert counts(database) == (EXPIRED, LIVE)

        procs.celery_worker(name="worker")
        # Small batches, each its own transaction: the kill lands between or inside one.
        app.send_task("delegation_idp.tasks.sweep_expired", kwargs={"batch_size": 10})
        wait_for(lambda: counts(database)[0] < EXPIRED - 500, 120, "the sweep to make progress")
        procs.stop("worker", signal.SIGKILL)

        old, live = counts(database)
        assert 0 < old < EXPIRED, "the worker was killed mid-sweep, and finished batches stayed done"
        assert live == LIVE, "nothing unexpired was deleted"
        with sqlite3.connect(database, timeout=60) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        # The next run (here sent by hand, normally by beat) finishes the job.
        procs.celery_worker(name="worker-2")
        app.send_task("delegation_idp.tasks.sweep_expired", kwargs={"batch_size": 1000})
        wait_for(lambda: counts(database)[0] == 0, 120, "the next sweep to finish")
        assert counts(database) == (0, LIVE)
    app.close()
