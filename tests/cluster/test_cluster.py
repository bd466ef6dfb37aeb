"""The production deployment as a cluster on one machine.

Two gunicorn instances on different loopback ports share one PostgreSQL
database (migrated from zero) and one Redis (cache, broker, revocation set);
one Celery worker and one beat run beside them. Every process is started
from the Procfile's own commands. The tests run in order against the same
cluster and the module's fixture stops everything it started.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from jwcrypto import jwk, jwt

from delegation_idp.client import AgentClient, OAuthError
from example_project.demo_services.management.commands.demo import user_token
from tests.cluster.conftest import pinned_client, start_layout, start_web
from tests.conftest import free_port
from tests.helpers import decode
from tests.procs import Cluster, cluster, site_env

pytestmark = pytest.mark.integration

ROTATE_TASK = "delegation_idp.tasks.rotate_keys"


@dataclass
class Site:
    procs: Cluster
    env: dict[str, str]
    cast: dict[str, Any]
    issuer: str
    redis_url: str
    web: dict[str, str] = field(default_factory=dict)  # instance name -> base URL
    ports: dict[str, int] = field(default_factory=dict)

    def client(self, agent: str, instance: str) -> AgentClient:
        """``agent``'s client whose every request goes to ``instance``."""
        creds = self.cast["agents"][agent]
        return AgentClient(
            self.issuer, creds["client_id"], creds["client_secret"], http=pinned_client(self.web[instance])
        )

    def uri(self, name: str) -> str:
        return str(self.cast["agents"][name]["uri"])

    def token_posts(self, instance: str) -> int:
        """Token endpoint requests in the instance's gunicorn access log."""
        return self.procs.log(f"web-{instance}").count('"POST /o/token/')

    def token_posts_since(self, instance: str, before: int, expected: int, timeout: float = 10) -> int:
        """Token endpoint requests logged since ``before``, once ``expected`` are (or at the
        timeout): gunicorn writes its access-log line after the response has gone out."""
        deadline = time.monotonic() + timeout
        while (count := self.token_posts(instance) - before) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return count


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, cluster_database: str, cluster_redis: str
) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("cluster")
    ports = {"a": free_port(), "b": free_port()}
    issuer = f"http://127.0.0.1:{ports['a']}"  # the load balancer's name; here instance a's
    env = site_env(
        tmp_path,
        issuer=issuer,
        database_url=cluster_database,
        broker_url=cluster_redis,
        redis_url=cluster_redis,
        IDP_JWKS_CACHE_SECONDS="2",  # a forced rotation starts signing two seconds later
        IDP_KEY_CACHE_SECONDS="1",
        IDP_CLIENT_SECRET_HMAC_KEY="cluster-test-hmac-key-not-for-production",
        WEB_CONCURRENCY="1",
        CELERY_CONCURRENCY="1",
        CELERY_BEAT_SCHEDULE_FILENAME=str(tmp_path / "celerybeat-schedule"),
    )
    with cluster(tmp_path, env, migrate=False) as procs:
        cast, web = start_layout(procs, env, ports)
        yield Site(procs, env, cast, issuer, cluster_redis, web=web, ports=ports)
    assert procs.processes, "the cluster started processes"
    assert all(proc.poll() is not None for _, proc in procs.processes), "a process outlived the cluster"


def verify_with_jwks(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify a token's signature against a published JWKS (key chosen by ``kid``)."""
    keys = jwk.JWKSet.from_json(json.dumps(jwks))
    verified = jwt.JWT(jwt=token, key=keys, algs=["ES256", "RS256", "EdDSA"])
    return dict(json.loads(verified.claims))


def test_instances_share_one_database_and_report_health(site: Site) -> None:
    for url in site.web.values():
        health = httpx.get(f"{url}/health/", timeout=30)
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["status"] == "ok"
        assert body["checks"]["database"]["ok"] and body["checks"]["cache"]["ok"]
        assert body["checks"]["cache"]["shared"] is True
        assert body["checks"]["broker"] == {**body["checks"]["broker"], "ok": True, "eager": False}
        metadata = httpx.get(f"{url}/.well-known/oauth-authorization-server", timeout=30).json()
        assert metadata["issuer"] == site.issuer
    jwks = [httpx.get(f"{url}/.well-known/jwks.json", timeout=30).json() for url in site.web.values()]
    assert jwks[0] == jwks[1] and jwks[0]["keys"]


@pytest.mark.rfc("8693-2.1")
def test_four_hop_chain_with_every_hop_on_another_instance(site: Site) -> None:
    before = {name: site.token_posts(name) for name in site.web}
    tokens = [user_token(site.web["a"], site.cast)]  # hop 1 on a: sign-in, consent, code redemption
    hops = (
        ("agent1", site.uri("agent2"), "b"),
        ("agent2", site.uri("mcp-server1"), "a"),
        ("mcp-server1", site.cast["resource_server"]["uri"], "b"),
    )
    for agent, target, instance in hops:
        client = site.client(agent, instance)
        tokens.append(client.exchange(tokens[-1], audience=target).access_token)
    # a served the code redemption and hop 3; b served hops 2 and 4.
    assert site.token_posts_since("a", before["a"], 2) == 2
    assert site.token_posts_since("b", before["b"], 2) == 2

    jwks = {
        name: httpx.get(f"{url}/.well-known/jwks.json", timeout=30).json() for name, url in site.web.items()
    }
    claims = [verify_with_jwks(token, jwks["a"]) for token in tokens]
    assert [verify_with_jwks(token, jwks["b"]) for token in tokens] == claims
    assert {c["iss"] for c in claims} == {site.issuer}
    assert {c["sub"] for c in claims} == {"user@example.com"}
    assert claims[3]["aud"] == site.cast["resource_server"]["uri"]
    assert claims[3]["act"] == {
        "sub": site.uri("mcp-server1"),
        "act": {"sub": site.uri("agent2"), "act": {"sub": site.uri("agent1")}},
    }
    # Each instance sees the tokens the other one issued as active.
    assert site.client("mcp-server1", "a").introspect(tokens[3])["active"] is True
    assert site.client("agent2", "b").introspect(tokens[1])["active"] is True


def test_key_rotation_through_the_worker_while_both_instances_exchange(site: Site) -> None:
    """Rotation is queued on the broker by task name and done by the worker; meanwhile
    two loops exchange and introspect across both instances without one failure."""
    from celery import Celery

    roots = {"a": user_token(site.web["a"], site.cast), "b": user_token(site.web["b"], site.cast)}
    old_kid = decode(roots["a"])[0]["kid"]
    stop = threading.Event()
    issued: list[tuple[str, str]] = []  # (instance that signed, kid)
    failures: list[str] = []

    def loop(first: str, second: str) -> None:
        agent1, agent2 = site.client("agent1", first), site.client("agent2", second)
        while not stop.is_set():
            try:
                child = agent1.exchange(roots[first], audience=site.uri("agent2"), use_cache=False)
                if agent2.introspect(child.access_token).get("active") is not True:
                    failures.append(f"{second} saw a token from {first} as inactive")
                grandchild = agent2.exchange(
                    child.access_token, audience=site.uri("mcp-server1"), use_cache=False
                )
                issued.append((first, decode(child.access_token)[0]["kid"]))
                issued.append((second, decode(grandchild.access_token)[0]["kid"]))
            except (OAuthError, httpx.HTTPError) as exc:
                failures.append(f"{first}->{second}: {exc!r}")
            # Paced under the shared throttle (600/min per client, 1200/min per address).
            stop.wait(0.5)

    loops = [threading.Thread(target=loop, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in loops:
        thread.start()
    broker = Celery("cluster-test", broker=site.redis_url)
    sent = 0
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            new = {instance for instance, kid in issued if kid != old_kid}
            if new == {"a", "b"}:
                break
            # The first forced rotation publishes a `next` key, a later one promotes it.
            broker.send_task(ROTATE_TASK, kwargs={"force": True})
            sent += 1
            time.sleep(1.5)
        time.sleep(2)  # keep exchanging after the switch
    finally:
        stop.set()
        for thread in loops:
            thread.join(timeout=120)
        broker.close()

    assert failures == []
    assert len(issued) >= 8, issued  # the loops really ran through the rotation
    signers = {(instance, kid != old_kid) for instance, kid in issued}
    assert signers == {("a", False), ("b", False), ("a", True), ("b", True)}, signers
    assert site.procs.log("worker").count(f"{ROTATE_TASK}[") >= 2 * sent  # received and succeeded
    # Beat schedules rotation every JWKS cache lifetime (two seconds here) through the same broker.
    assert "Sending due task rotate-signing-keys" in site.procs.log("beat")
    # The retired key stays published on both instances, and its tokens still exchange.
    for instance, url in site.web.items():
        kids = {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json", timeout=30).json()["keys"]}
        assert old_kid in kids and len(kids) >= 2
        result = site.client("agent1", instance).exchange(
            roots["a"], audience=site.uri("agent2"), use_cache=False
        )
        assert decode(result.access_token)[0]["kid"] != old_kid
    assert sent >= 2


@pytest.mark.rfc("7009-2.1")
def test_revoking_a_root_on_one_instance_is_refused_on_the_other_at_once(site: Site) -> None:
    root = user_token(site.web["a"], site.cast)
    t1 = site.client("agent1", "a").exchange(root, audience=site.uri("agent2")).access_token
    t2 = site.client("agent2", "a").exchange(t1, audience=site.uri("mcp-server1")).access_token
    on_b = {name: site.client(name, "b") for name in ("agent1", "agent2", "mcp-server1")}
    assert on_b["agent2"].introspect(t1)["active"] is True
    assert on_b["mcp-server1"].introspect(t2)["active"] is True

    site.client("agent1", "a").revoke(root)

    # No wait: b answers from the shared database.
    with pytest.raises(OAuthError) as refused:
        on_b["agent2"].exchange(t1, audience=site.uri("mcp-server1"), use_cache=False)
    assert (refused.value.status, refused.value.error) == (400, "invalid_request")
    with pytest.raises(OAuthError) as refused:
        on_b["mcp-server1"].exchange(t2, audience=site.cast["resource_server"]["uri"], use_cache=False)
    assert (refused.value.status, refused.value.error) == (400, "invalid_request")
    with pytest.raises(OAuthError) as refused:
        on_b["agent1"].exchange(root, audience=site.uri("agent2"), use_cache=False)
    assert refused.value.error == "invalid_request"
    assert on_b["agent2"].introspect(t1) == {"active": False}
    assert on_b["mcp-server1"].introspect(t2) == {"active": False}
    assert on_b["agent1"].introspect(root) == {"active": False}


def test_instance_with_redis_unreachable_still_issues_and_revokes(site: Site) -> None:
    """Instance b restarts with its cache, broker and revocation-set URLs on a closed
    loopback port (the machine's Redis keeps running for everyone else)."""
    import redis

    closed = f"redis://127.0.0.1:{free_port()}/0"
    site.procs.stop("web-b")
    env = {**site.env, "REDIS_URL": closed, "CELERY_BROKER_URL": closed}
    site.web["b"] = start_web(site.procs, "web-b-noredis", site.ports["b"], env)

    health = httpx.get(f"{site.web['b']}/health/", timeout=30)
    assert health.status_code == 200  # the database, the only required check, is up
    checks = health.json()["checks"]
    assert health.json()["status"] == "degraded"
    assert (checks["database"]["ok"], checks["cache"]["ok"], checks["broker"]["ok"]) == (True, False, False)
    assert "127.0.0.1" not in health.text

    # Issues: sign-in, code redemption and two exchanges on b.
    root = user_token(site.web["b"], site.cast)
    t1 = site.client("agent1", "b").exchange(root, audience=site.uri("agent2")).access_token
    t2 = site.client("agent2", "b").exchange(t1, audience=site.uri("mcp-server1")).access_token
    assert site.client("mcp-server1", "a").introspect(t2)["active"] is True

    # Revokes: on b, refused on b and on a.
    site.client("agent1", "b").revoke(root)
    for instance in ("b", "a"):
        with pytest.raises(OAuthError) as refused:
            site.client("agent2", instance).exchange(t1, audience=site.uri("mcp-server1"), use_cache=False)
        assert refused.value.error == "invalid_request"
        assert site.client("mcp-server1", instance).introspect(t2) == {"active": False}

    # And a revocation made on a takes effect on b.
    other = user_token(site.web["a"], site.cast)
    child = site.client("agent1", "a").exchange(other, audience=site.uri("agent2")).access_token
    assert site.client("agent2", "b").introspect(child)["active"] is True
    site.client("agent1", "a").revoke(other)
    assert site.client("agent2", "b").introspect(child) == {"active": False}

    assert redis.Redis.from_url(site.redis_url).ping() is True
