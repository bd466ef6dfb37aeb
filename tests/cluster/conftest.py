"""Fixtures for the cluster tests: a throw-away PostgreSQL database, Redis DB 7,
the Procfile's process types, and an HTTP transport pinned to one web instance."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.procs import ROOT, Cluster, scratch_database, seed, wait_http

REDIS_DB = 7  # this area's Redis database


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """The process types of a Procfile: ``{"web": "gunicorn ...", ...}``."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def start(procs: Cluster, kind: str, name: str, env: dict[str, str]) -> Any:
    """Start one Procfile process type the way a Procfile runner does: ``sh -c`` with
    the virtualenv's scripts first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"}
    return procs._spawn(name, ["/bin/sh", "-c", procfile()[kind]], env)


def start_web(procs: Cluster, name: str, port: int, env: dict[str, str]) -> str:
    start(procs, "web", name, {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"})
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health/", timeout=90)
    return url


def wait_log(procs: Cluster, name: str, needle: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in procs.log(name):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never logged {needle!r}:\n{procs.log(name)[-3000:]}")


def start_layout(
    procs: Cluster, env: dict[str, str], ports: dict[str, int]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The Procfile's production layout on ``env``: the release step (migrate from zero),
    the seed's cast, one web instance per port, a worker and beat. Returns the cast and
    the instances' base URLs by name."""
    start(procs, "release", "release", env)
    deadline = time.monotonic() + 240
    while procs.processes[-1][1].poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert procs.processes[-1][1].returncode == 0, procs.log("release")
    cast = seed(env)
    web = {name: start_web(procs, f"web-{name}", port, env) for name, port in ports.items()}
    start(procs, "worker", "worker", env)
    start(procs, "beat", "beat", env)
    wait_log(procs, "worker", "ready")
    wait_log(procs, "beat", "beat: Starting")
    return cast, web


class Pinned(httpx.HTTPTransport):
    """Sends every request to one web instance, whatever host the URL names.

    All instances share one issuer (the load balancer's name in production), so
    metadata and clients keep the issuer's URLs and this transport plays the
    load balancer that routes a request to a chosen instance.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.target = httpx.URL(base_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.target.host, port=self.target.port)
        return super().handle_request(request)


def pinned_client(base_url: str) -> httpx.Client:
    return httpx.Client(transport=Pinned(base_url), timeout=60)


@pytest.fixture(scope="module")
def cluster_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``test_cluster_*`` (migrated from zero by the test), dropped after."""
    with scratch_database(postgres_url, "test_cluster") as url:
        yield url


@pytest.fixture(scope="module")
def cluster_redis(redis_url: str) -> Iterator[str]:
    """Redis DB 7 on the machine's Redis (the cache, broker and revocation set), emptied before and after."""
    import redis

    parts = urlsplit(redis_url)
    url = urlunsplit(parts._replace(path=f"/{REDIS_DB}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
