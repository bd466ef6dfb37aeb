"""Metrics of one gunicorn instance with two workers, started from the Procfile's ``web``
command (example_project/gunicorn.conf.py): with ``PROMETHEUS_MULTIPROC_DIR`` each worker
counts into its own file, and every scrape, whichever worker answers it, sums them all;
a worker that ends leaves its counts in the sum."""

from __future__ import annotations

import glob
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from delegation_idp import TOKEN_EXCHANGE_GRANT
from example_project.demo_services.management.commands.demo import user_token
from tests.cluster.conftest import start_web
from tests.conftest import ACCESS_TOKEN_TYPE, free_port
from tests.procs import Cluster, cluster, seed, site_env

pytestmark = pytest.mark.integration

TOKEN = "integration-metrics-token-0123456789abcdef"
REQUESTS = "delegation_idp_requests_total"
GRANTED = {"endpoint": "token", "grant": TOKEN_EXCHANGE_GRANT, "result": "granted", "reason": "allowed"}
REFUSED = {"endpoint": "token", "grant": TOKEN_EXCHANGE_GRANT, "result": "denied", "reason": "target_unknown"}


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def per_file(directory: Path, labels: dict[str, str]) -> dict[int, float]:
    """The count of one series in each process's own file: ``{pid: value}``."""
    counts = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for family in MultiProcessCollector.merge([path]):
            for sample in family.samples:
                if sample.name == REQUESTS and sample.labels == labels:
                    counts[pid] = sample.value
    return counts


def worker_pids(procs: Cluster) -> list[int]:
    return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", procs.log("web"))]


def wait_for(what: str, ready: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_two_workers_counts_are_summed_at_every_scrape(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    stale = directory / "counter_1.db"
    stale.write_bytes(b"left by an earlier run")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = site_env(
        tmp_path,
        issuer=url,
        IDP_CLIENT_SECRET_HMAC_KEY="metrics-test-hmac-key-not-for-production",
        IDP_METRICS="1",
        IDP_METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        WEB_CONCURRENCY="2",
    )
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        start_web(procs, "web", port, env)
        wait_for("two workers", lambda: len(worker_pids(procs)) >= 2)
        assert not stale.exists(), "the instance's start empties the directory"
        agent1 = cast["agents"]["agent1"]
        subject = user_token(url, cast)

        def exchange(audience: str) -> int:
            form = {
                "grant_type": TOKEN_EXCHANGE_GRANT,
                "subject_token": subject,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "audience": audience,
            }
            auth = (agent1["client_id"], agent1["client_secret"])
            return httpx.post(f"{url}/o/token/", data=form, auth=auth, timeout=30).status_code

        audiences = [cast["agents"]["agent2"]["uri"]] * 5 + ["https://unknown.example.com"]
        statuses: list[int] = []
        # Concurrent clients: while one sync worker is busy the other takes the next
        # connection. Repeated (bounded) until each worker has counted some.
        for _ in range(10):
            with ThreadPoolExecutor(max_workers=4) as pool:
                statuses += list(pool.map(exchange, audiences * 4))
            if len(per_file(directory, GRANTED)) >= 2:
                break
        assert set(statuses) <= {200, 400}, statuses
        counted = per_file(directory, GRANTED)
        assert len(counted) >= 2 and all(n > 0 for n in counted.values()), counted
        assert sum(counted.values()) == statuses.count(200)

        for _ in range(6):  # whichever worker answers
            samples = scrape(url)
            assert samples[(REQUESTS, frozenset(GRANTED.items()))] == statuses.count(200)
            assert samples[(REQUESTS, frozenset(REFUSED.items()))] == statuses.count(400)

        # A worker ends (recycled or killed): gunicorn's child_exit marks it dead, which removes
        # its live gauges only; its counters stay in the sum.
        gone = next(pid for pid in worker_pids(procs) if pid in counted)
        live_gauge = directory / f"gauge_livesum_{gone}.db"
        live_gauge.write_bytes(b"")
        os.kill(gone, signal.SIGTERM)
        wait_for("a replacement worker", lambda: len(worker_pids(procs)) >= 3)
        wait_for("child_exit", lambda: not live_gauge.exists())
        for _ in range(4):
            samples = scrape(url)
            assert samples[(REQUESTS, frozenset(GRANTED.items()))] == statuses.count(200)
