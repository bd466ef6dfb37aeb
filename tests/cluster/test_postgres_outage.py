"""PostgreSQL stopped under the example site (gunicorn, DEBUG off), hung (SIGSTOP) and
really stopped: every endpoint answers a JSON 503 with ``Retry-After`` within a bounded
time, never an HTML 500; once PostgreSQL is back, the same requests succeed again.

The site runs with ``DATABASE_TIMEOUT=2`` (libpq ``connect_timeout``, ``statement_timeout``,
``lock_timeout``, ``tcp_user_timeout``) and ``DATABASE_CONN_MAX_AGE=0``: a connection
opened before the server hung would wait on its socket with no client-side bound (the
kernel still acknowledges a stopped process's traffic), so every request connects anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from example_project.demo_services.management.commands.demo import user_token
from tests.cluster.private_postgres import PrivatePostgres, private_postgres  # noqa: F401 - fixture
from tests.conftest import free_port
from tests.procs import Cluster, cluster, manage, seed, site_env

pytestmark = pytest.mark.integration

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
TIMEOUT = 2  # DATABASE_TIMEOUT of the site
BOUND = 4 * TIMEOUT + 2  # a refused request connects at most for its query and for its audit record


@dataclass
class Site:
    procs: Cluster
    issuer: str
    cast: dict[str, Any]
    service: tuple[str, str]  # a client-credentials application (id, secret)

    def auth(self, name: str) -> tuple[str, str]:
        agent = self.cast["agents"][name]
        return agent["client_id"], agent["client_secret"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, private_postgres: PrivatePostgres) -> Iterator[Site]:  # noqa: F811
    tmp_path = tmp_path_factory.mktemp("postgres-outage")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(
        tmp_path,
        issuer=issuer,
        database_url=private_postgres.create_database("site"),
        DATABASE_TIMEOUT=str(TIMEOUT),
        DATABASE_CONN_MAX_AGE="0",
        IDP_CLIENT_SECRET_HMAC_KEY="outage-test-hmac-key-not-for-production",
    )
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        service = manage(
            env,
            "shell",
            "-c",
            "from oauth2_provider.models import get_application_model as m\n"
            "a = m().objects.create(name='service', client_type='confidential',"
            " authorization_grant_type='client-credentials', client_secret='service-secret',"
            " hash_client_secret=False)\n"
            "print(a.client_id)",
        ).stdout.strip()
        procs.gunicorn(port, workers=2)
        yield Site(procs, issuer, cast, (service.splitlines()[-1], "service-secret"))


def requests(site: Site) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    """One request per endpoint, on tokens issued while the database was up."""
    root = user_token(site.issuer, site.cast)
    agents = site.cast["agents"]
    with httpx.Client(timeout=30) as http:
        child = http.post(
            f"{site.issuer}/o/token/",
            data={
                "grant_type": GRANT,
                "subject_token": root,
                "subject_token_type": ACCESS,
                "audience": agents["agent2"]["uri"],
            },
            auth=site.auth("agent1"),
        ).json()["access_token"]
    return {
        "exchange": lambda http: http.post(
            "/o/token/",
            data={
                "grant_type": GRANT,
                "subject_token": root,
                "subject_token_type": ACCESS,
                "audience": agents["agent2"]["uri"],
            },
            auth=site.auth("agent1"),
        ),
        "client_credentials": lambda http: http.post(
            "/o/token/", data={"grant_type": "client_credentials"}, auth=site.service
        ),
        "introspection": lambda http: http.post(
            "/o/introspect/", data={"token": root}, auth=site.auth("agent1")
        ),
        "revocation": lambda http: http.post(
            "/o/revoke_token/",
            data={"token": child, "token_type_hint": "access_token"},
            auth=site.auth("agent2"),
        ),
        "jwks": lambda http: http.get("/.well-known/jwks.json"),
        "metadata": lambda http: http.get("/.well-known/oauth-authorization-server"),
    }


def assert_unavailable(name: str, response: httpx.Response, elapsed: float) -> None:
    assert elapsed < BOUND, (name, elapsed)
    if name == "metadata":  # reads only settings: it never needed the database
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 503, (name, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), (name, response.text[:300])
    assert response.json()["error"] == "temporarily_unavailable", name
    assert response.headers["retry-after"].isdigit(), name
    assert response.headers["cache-control"] == "no-store", name


def assert_recovers(site: Site, calls: dict[str, Callable[[httpx.Client], httpx.Response]]) -> None:
    deadline = time.monotonic() + 60
    pending = dict(calls)
    with httpx.Client(base_url=site.issuer, timeout=30) as http:
        while pending:
            for name, call in list(pending.items()):
                response = call(http)
                if response.status_code == 200:
                    del pending[name]
                else:  # only the outage's answer while the site reconnects
                    assert response.status_code == 503, (name, response.status_code, response.text[:300])
            assert time.monotonic() < deadline, sorted(pending)
            time.sleep(0.5)


@pytest.mark.rfc("7009-2.2.1")
@pytest.mark.parametrize("fault", ["hung", "stopped"])
def test_every_endpoint_answers_503_while_postgres_is_unavailable(site, private_postgres, fault):  # noqa: F811
    calls = requests(site)
    with httpx.Client(base_url=site.issuer, timeout=30) as http:
        for name, call in calls.items():
            assert call(http).status_code == 200, name
    (private_postgres.pause if fault == "hung" else private_postgres.stop)()
    try:
        with httpx.Client(base_url=site.issuer, timeout=60) as http:
            for name, call in calls.items():
                started = time.monotonic()
                response = call(http)
                assert_unavailable(name, response, time.monotonic() - started)
    finally:
        (private_postgres.resume if fault == "hung" else private_postgres.start)()
    assert_recovers(site, calls)
    log = site.procs.log(next(label for label, _ in site.procs.processes))
    assert "Internal Server Error" not in log
