"""The sweep and the Redis publication in a real Celery worker, through the real Redis
broker, against a site served by gunicorn."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from delegation_idp.client import AgentClient
from tests.conftest import free_port
from tests.helpers import decode
from tests.procs import cluster, seed, site_env

pytestmark = pytest.mark.integration

PREFIX = "delegation_idp:revoked:"


def wait_for(condition: Any, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_sweep_and_publication_run_in_a_real_worker(tmp_path, lineage_redis_url):
    from example_project.demo_services.management.commands.demo import user_token

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer, broker_url=lineage_redis_url, redis_url=lineage_redis_url)
    store = redis.Redis.from_url(lineage_redis_url)
    database = tmp_path / "site.sqlite3"
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        procs.gunicorn(port)
        agents = cast["agents"]
        agent1 = AgentClient(issuer, agents["agent1"]["client_id"], agents["agent1"]["client_secret"])
        agent2 = AgentClient(issuer, agents["agent2"]["client_id"], agents["agent2"]["client_secret"])
        root = user_token(issuer, cast)
        child = agent1.exchange(root, audience=agents["agent2"]["uri"]).access_token
        grandchild = agent2.exchange(child, audience=agents["mcp-server1"]["uri"]).access_token
        jtis = [decode(t)[1]["jti"] for t in (root, child, grandchild)]

        # RFC 7009 at the provider: the subtree is revoked and published as the request commits.
        response = httpx.post(
            f"{issuer}/o/revoke_token/",
            data={"token": child, "token_type_hint": "access_token"},
            auth=(agents["agent1"]["client_id"], agents["agent1"]["client_secret"]),
        )
        assert response.status_code == 200
        assert store.get(PREFIX + jtis[1]) == b"revoked"
        assert store.exists(PREFIX + jtis[2]) and not store.exists(PREFIX + jtis[0])

        # Redis loses the set; the worker's publication task rebuilds it.
        store.delete(PREFIX + jtis[1], PREFIX + jtis[2])
        procs.celery_worker()
        app = Celery("lineage-test", broker=lineage_redis_url)
        app.send_task("delegation_idp.tasks.publish_revocations")
        wait_for(
            lambda: store.exists(PREFIX + jtis[1]) and store.exists(PREFIX + jtis[2]), what="publication"
        )
        assert not store.exists(PREFIX + jtis[0])
        assert store.exists(PREFIX + "@published")
        assert store.ttl(PREFIX + jtis[1]) > 0

        # Age every record past retention; the worker's sweep deletes them in batches.
        with sqlite3.connect(database) as db:
            db.execute("UPDATE delegation_idp_tokenlineage SET expires_at = '2000-01-01 00:00:00'")
            db.execute("UPDATE oauth2_provider_accesstoken SET expires = '2000-01-01 00:00:00'")
            before = db.execute("SELECT COUNT(*) FROM delegation_idp_tokenlineage").fetchone()[0]
        assert before == 3

        def swept() -> bool:
            with sqlite3.connect(database) as db:
                return db.execute("SELECT COUNT(*) FROM delegation_idp_tokenlineage").fetchone()[0] == 0

        app.send_task("delegation_idp.tasks.sweep_expired", kwargs={"batch_size": 1})
        wait_for(swept, what="sweep")
        with sqlite3.connect(database) as db:
            # The user token keeps its row: a refresh token still points to it.
            remaining = db.execute("SELECT COUNT(*) FROM oauth2_provider_accesstoken").fetchone()[0]
        assert remaining <= 1
        log = procs.log("worker")
        assert "delegation_idp.tasks.publish_revocations" in log
        assert "delegation_idp.tasks.sweep_expired" in log
        app.close()
    store.close()
