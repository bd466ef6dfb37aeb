"""Concurrent writes over real HTTP against gunicorn, on a SQLite file and on PostgreSQL:
parallel redemptions of one authorization code, and a root revoked while twenty threads
exchange its descendants. No answer is a 500: each is a 200, an RFC 6749 JSON 4xx, or a
JSON 503 with ``Retry-After`` that the client may retry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from delegation_idp.client import AgentClient
from example_project.demo_services.management.commands.demo import (
    authorization_code,
    redemption_form,
    user_token,
)
from tests.conftest import free_port
from tests.procs import cluster, scratch_database, seed, site_env

pytestmark = pytest.mark.integration

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the site's SQLite file; else a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with scratch_database(request.getfixturevalue("postgres_url"), "test_writes") as url:
        yield url


def acceptable(response: httpx.Response) -> bool:
    """200; a JSON 4xx with an ``error``; a JSON 503 with ``Retry-After``."""
    if response.status_code == 200:
        return True
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    if not response.json().get("error"):
        return False
    if response.status_code == 503:
        return response.headers.get("retry-after", "").isdigit()
    return 400 <= response.status_code < 500


def test_concurrent_writes_never_answer_500(tmp_path, database_url):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer, database_url=database_url)
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        procs.gunicorn(port, workers=4)
        agent1, agent2 = cast["agents"]["agent1"], cast["agents"]["agent2"]
        answers: list[httpx.Response] = []

        # Eight parallel redemptions of one code, three times.
        for _ in range(3):
            code, verifier = authorization_code(issuer, cast)
            start = threading.Barrier(8)

            def redeem(_: int, code: str = code, verifier: str = verifier, start: Any = start) -> Any:
                with httpx.Client(timeout=60, auth=(agent1["client_id"], agent1["client_secret"])) as http:
                    start.wait()
                    return http.post(f"{issuer}/o/token/", data=redemption_form(agent1, code, verifier))

            with ThreadPoolExecutor(8) as pool:
                round_answers = list(pool.map(redeem, range(8)))
            assert sum(r.status_code == 200 for r in round_answers) <= 1, "a code redeemed twice"
            answers += round_answers

        # A root revoked while twenty threads exchange its descendants.
        root = user_token(issuer, cast)
        with httpx.Client(timeout=60, auth=(agent1["client_id"], agent1["client_secret"])) as http:
            child = http.post(
                f"{issuer}/o/token/",
                data={
                    "grant_type": GRANT,
                    "subject_token": root,
                    "subject_token_type": ACCESS,
                    "audience": agent2["uri"],
                },
            )
        assert child.status_code == 200, child.text
        subject = child.json()["access_token"]
        stop = threading.Event()
        lock = threading.Lock()
        exchanged: list[httpx.Response] = []

        def hammer(_: int) -> None:
            with httpx.Client(timeout=60, auth=(agent2["client_id"], agent2["client_secret"])) as http:
                while not stop.is_set():
                    response = http.post(
                        f"{issuer}/o/token/",
                        data={
                            "grant_type": GRANT,
                            "subject_token": subject,
                            "subject_token_type": ACCESS,
                            "audience": cast["agents"]["mcp-server1"]["uri"],
                        },
                    )
                    with lock:
                        exchanged.append(response)

        pool = ThreadPoolExecutor(20)
        futures = [pool.submit(hammer, i) for i in range(20)]
        try:
            deadline = time.monotonic() + 120
            while sum(r.status_code == 200 for r in exchanged) < 10:
                assert time.monotonic() < deadline, {r.status_code for r in exchanged}
                time.sleep(0.05)
            revoker = AgentClient(issuer, agent1["client_id"], agent1["client_secret"], timeout=60)
            revoker.REVOKE_ATTEMPTS = 20  # retried on 503 until the revocation commits
            revoker.revoke(root)
            time.sleep(1)
        finally:
            stop.set()
            pool.shutdown(wait=True)
        for future in futures:
            future.result()
        answers += exchanged

        statuses = sorted({r.status_code for r in answers})
        wrong = [
            (r.status_code, r.headers.get("content-type"), r.text[:200]) for r in answers if not acceptable(r)
        ]
        assert not wrong, (statuses, wrong[:5])
        assert 500 not in statuses
        # After the revocation committed, the descendants are refused, not issued.
        assert exchanged[-1].status_code in (400, 503), exchanged[-1].text
