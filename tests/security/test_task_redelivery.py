"""A task whose worker died is delivered again within minutes: a real Celery worker is
killed (SIGKILL) inside a forced rotation task, a new worker starts, and the rotation
completes within the site's visibility timeout (short here: ``CELERY_VISIBILITY_TIMEOUT``)."""

from __future__ import annotations

import signal
import sqlite3
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery

from tests.conftest import free_port
from tests.procs import cluster, manage, site_env

pytestmark = pytest.mark.integration

REDIS_DB = 5  # this area's Redis database
VISIBILITY = 8  # seconds
KEYGEN = 2.0  # seconds a key generation takes in the worker


@pytest.fixture
def broker(redis_url: str):
    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{REDIS_DB}"))
    store = redis.Redis.from_url(url)
    store.flushdb()
    yield url
    store.flushdb()
    store.close()


def next_keys(database) -> int:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT COUNT(*) FROM delegation_idp_signingkey WHERE state = 'next'").fetchone()[0]


def wait_for(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_rotation_of_a_killed_worker_is_redelivered_within_the_visibility_timeout(tmp_path, broker):
    env = site_env(
        tmp_path,
        issuer=f"http://127.0.0.1:{free_port()}",
        broker_url=broker,
        DJANGO_SETTINGS_MODULE="tests.security.slow_keygen_settings",
        SLOW_KEYGEN_SECONDS=str(KEYGEN),
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY),
    )
    database = tmp_path / "site.sqlite3"
    app = Celery("redelivery-test", broker=broker)
    with cluster(tmp_path, env) as procs:
        manage(
            env,
            "shell",
            "-c",
            "from delegation_idp.provider.keys import ensure_current_key; ensure_current_key()",
        )
        procs.celery_worker(name="worker")
        app.send_task("delegation_idp.tasks.rotate_keys", kwargs={"force": True})
        wait_for(lambda: "slow key generation started" in procs.log("worker"), 60, "the rotation to start")
        procs.stop("worker", signal.SIGKILL)
        killed_at = time.monotonic()
        assert next_keys(database) == 0, "the worker died before the rotation finished"

        procs.celery_worker(name="worker-2")
        bound = VISIBILITY * 1.1 + 1 + KEYGEN + 10  # timeout, one sweep interval, the task, start-up
        wait_for(lambda: next_keys(database) == 1, bound, "the rotation to be redelivered and done")
        elapsed = time.monotonic() - killed_at
        assert elapsed >= VISIBILITY - 1, "redelivered only once the visibility timeout passed"
        assert "slow key generation started" in procs.log("worker-2")
        with sqlite3.connect(database) as db:
            current = db.execute("SELECT COUNT(*) FROM delegation_idp_signingkey WHERE state='current'")
            assert current.fetchone()[0] == 1
    app.close()
