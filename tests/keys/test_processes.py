"""Rotation with real processes: gunicorn, a Celery worker on the real Redis broker,
beat, and a client loop in a second process. PostgreSQL holds the site's database."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from delegation_idp import jose
from delegation_idp.client import AgentClient
from tests.conftest import free_port
from tests.helpers import decode
from tests.procs import ROOT, cluster, scratch_database, seed, site_env

REDIS_DB = 2  # this area's Redis database
FAST = {
    "JWKS_CACHE_SECONDS": 2,
    "KEY_CACHE_SECONDS": 1,
    "KEY_RELOAD_MIN_INTERVAL": 1,
    "CLOCK_SKEW_SECONDS": 1,
    "THROTTLE_RATES": {},
}


@pytest.fixture
def site_database(postgres_url):
    with scratch_database(postgres_url, "test_keys_site") as url:
        yield url


@pytest.fixture
def broker(redis_url):
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{REDIS_DB}"))


def keys_env(tmp_path, issuer, database, broker, queue, options, token_seconds=None):
    extra = {
        "DJANGO_SETTINGS_MODULE": "tests.keys.site_settings",
        "KEYS_TEST_QUEUE": queue,
        "KEYS_TEST_OPTIONS": json.dumps(options),
        "IDP_CLIENT_SECRET_HMAC_KEY": "keys-test-hmac-key-not-for-production",
        "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "celerybeat-schedule"),
    }
    if token_seconds:
        extra["KEYS_TEST_TOKEN_SECONDS"] = str(token_seconds)
    return site_env(tmp_path, issuer=issuer, database_url=database, broker_url=broker, **extra)


def jwks(issuer):
    return httpx.get(f"{issuer}/.well-known/jwks.json", timeout=30).json()["keys"]


def verify_with(published, token, audience, issuer):
    by_kid = {k["kid"]: jose.public_key(k) for k in published}
    _header, claims = jose.verify(
        token,
        by_kid.get,
        algorithms=["ES256", "RS256", "EdDSA"],
        max_bytes=8192,
        max_header_bytes=1024,
        max_json_depth=16,
    )
    jose.validate_claims(claims, issuer=issuer, now=time.time(), leeway=0, audience=audience)
    return claims


def until(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
def test_worker_rotates_from_the_redis_queue_and_the_web_process_follows(tmp_path, site_database, broker):
    from celery import Celery

    from example_project.demo_services.management.commands.demo import user_token

    port, queue = free_port(), f"keys-{secrets.token_hex(4)}"
    issuer = f"http://127.0.0.1:{port}"
    env = keys_env(tmp_path, issuer, site_database, broker, queue, FAST)
    sender = Celery(broker=broker)
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        procs.gunicorn(port, workers=2)
        procs.celery_worker(queues=queue)
        agents = cast["agents"]
        clients = {n: AgentClient(issuer, a["client_id"], a["client_secret"]) for n, a in agents.items()}
        old_token = user_token(issuer, cast)
        old_kid = decode(old_token)[0]["kid"]
        assert [k["kid"] for k in jwks(issuer)] == [old_kid]

        # Queue the task; the worker publishes a next key, which the web process serves at once.
        sender.send_task("delegation_idp.tasks.rotate_keys", kwargs={"force": True}, queue=queue)
        published = until(
            lambda: (lambda keys: keys if len(keys) == 2 else None)(jwks(issuer)), what="next key"
        )
        new_kid = ({k["kid"] for k in published} - {old_kid}).pop()
        still_old = clients["agent1"].exchange(old_token, audience=agents["agent2"]["uri"], use_cache=False)
        assert decode(still_old.access_token)[0]["kid"] == old_kid  # next is published, not signing

        # One JWKS cache lifetime later the worker promotes it; the web process signs with it.
        time.sleep(FAST["JWKS_CACHE_SECONDS"])
        sender.send_task("delegation_idp.tasks.rotate_keys", queue=queue)

        def exchanged_with_new_key():
            result = clients["agent1"].exchange(old_token, audience=agents["agent2"]["uri"], use_cache=False)
            return result.access_token if decode(result.access_token)[0]["kid"] == new_kid else None

        new_token = until(exchanged_with_new_key, what="a token signed by the new key")
        published = jwks(issuer)
        assert {k["kid"] for k in published} == {old_kid, new_kid}  # the old key stays published
        claims = verify_with(published, new_token, agents["agent2"]["uri"], issuer)
        assert claims["act"] == {"sub": agents["agent1"]["uri"]}
        verify_with(published, old_token, agents["agent1"]["uri"], issuer)
        # The provider verifies both: the old token introspects as active and still exchanges.
        assert clients["agent1"].introspect(old_token)["active"] is True
        assert clients["agent2"].introspect(new_token)["active"] is True
        # One worker signs with the new key; each process may keep its cached key set for
        # KEY_CACHE_SECONDS more. After that, every worker signs with the new key.
        time.sleep(FAST["KEY_CACHE_SECONDS"] + 0.5)
        for _ in range(6):  # several requests, so both workers answer
            onward = clients["agent2"].exchange(
                new_token, audience=agents["mcp-server1"]["uri"], use_cache=False
            )
            assert decode(onward.access_token)[0]["kid"] == new_kid
        log = procs.log("worker")
        assert log.count("delegation_idp.tasks.rotate_keys") >= 2 and "succeeded" in log


@pytest.mark.integration
def test_no_downtime_across_several_rotations(tmp_path, site_database, broker):
    """Beat rotates every few seconds; a client loop in another process never fails."""
    port, queue = free_port(), f"keys-{secrets.token_hex(4)}"
    issuer = f"http://127.0.0.1:{port}"
    options = {
        **FAST,
        "KEY_ROTATION_PERIOD": 5,
        "KEY_ROTATION_CHECK_SECONDS": 1,
        "EXCHANGED_TOKEN_LIFETIME": 12,
    }
    env = keys_env(tmp_path, issuer, site_database, broker, queue, options, token_seconds=12)
    seconds = 35
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        procs.gunicorn(port, workers=2)
        procs.celery_worker(queues=queue)
        procs.celery_beat()
        loop = subprocess.run(
            [sys.executable, "-m", "tests.keys.loop", issuer, json.dumps(cast), str(seconds)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        assert loop.returncode == 0, loop.stderr[-3000:]
        report = json.loads(loop.stdout.strip().splitlines()[-1])
        final = {k["kid"] for k in jwks(issuer)}
    assert report["failures"] == [], report
    assert report["rounds"] >= 20, report
    assert len(report["kids"]) >= 4, report  # signed by at least four keys in turn: several rotations
    assert report["reverified"] > report["rounds"], report
    # Retired keys left the JWKS once their tokens were gone.
    assert set(report["kids"][:2]).isdisjoint(final), (report, final)
