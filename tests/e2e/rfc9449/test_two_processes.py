"""DPoP nonces and replay across processes (RFC 9449 sections 8 and 11.1): two gunicorn
instances of the example site behind one issuer, sharing the database and the Redis cache,
with a short nonce lifetime.

* a nonce one instance sent is accepted by the other (stateless nonces under one secret);
* a proof used at one instance is refused as a replay at the other (the shared cache);
* once the lifetime has passed twice the kept nonce is stale: ``use_dpop_nonce``, and the
  agent client's one retry with the fresh nonce succeeds.

Time is controlled by the lifetime (2 s), not by long sleeps: the test waits only until the
clock has left the nonce's window (read from the nonce itself), and asserts no timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.client import AgentClient, DPoPKey
from example_project.demo_services.management.commands.demo import user_token
from tests.conftest import ACCESS_TOKEN_TYPE, free_port
from tests.procs import cluster, seed, site_env

pytestmark = [pytest.mark.integration, pytest.mark.rfc("9449-8"), pytest.mark.rfc("9449-11.1")]

REDIS_DB = 12  # this area's Redis database
LIFETIME = 2  # seconds: IDP_DPOP_NONCE_LIFETIME


class Instance(httpx.HTTPTransport):
    """Sends every request to one instance (a load balancer's choice), the issuer's URL and
    ``Host`` kept; records (status, error) of each token-endpoint answer."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.target = httpx.URL(base_url)
        self.answers: list[tuple[int, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.target.host, port=self.target.port)
        response = super().handle_request(request)
        if request.url.path == "/o/token/":
            response.read()
            error = response.json().get("error", "") if response.status_code != 200 else ""
            self.answers.append((response.status_code, error))
        return response


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[str]:
    import redis

    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{REDIS_DB}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def window_of(nonce: str) -> int:
    """The time window a nonce names (``<window hex>.<mac>``, delegation_idp.rfc9449.nonce)."""
    return int(nonce.split(".")[0], 16)


def test_nonces_rotate_and_replays_are_refused_across_two_gunicorn_processes(tmp_path, shared_redis):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer, redis_url=shared_redis, IDP_DPOP_NONCE_LIFETIME=str(LIFETIME))
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        a, b = Instance(procs.gunicorn(port)), Instance(procs.gunicorn())
        subject = user_token(issuer, cast)  # a bearer user token: exchanged for bound ones
        agent1 = cast["agents"]["agent1"]
        key = DPoPKey.generate()

        def agent_at(instance: Instance) -> AgentClient:
            return AgentClient(
                issuer,
                agent1["client_id"],
                agent1["client_secret"],
                http=httpx.Client(transport=instance),
                dpop=key,
            )

        def exchange(agent: AgentClient) -> str:
            result = agent.exchange(subject, audience=cast["agents"]["agent2"]["uri"], use_cache=False)
            assert result.jkt == key.jkt
            return result.access_token

        # Process A asks for a nonce (use_dpop_nonce), and the retry with it is granted.
        at_a = agent_at(a)
        exchange(at_a)
        assert a.answers == [(400, "use_dpop_nonce"), (200, "")]
        nonce = at_a.nonces.get(issuer)
        assert nonce

        # Process B accepts the nonce A sent: one request, granted. (The two clients share
        # one nonce cache: one agent whose requests a load balancer spreads over both.)
        at_b = agent_at(b)
        at_b.nonces = at_a.nonces
        exchange(at_b)
        assert b.answers == [(200, "")]

        # One proof, used at A, then replayed at B: refused there (the jti is in the shared cache).
        token_url = f"{issuer}/o/token/"
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": cast["agents"]["agent2"]["uri"],
        }
        proof = key.proof("POST", token_url, nonce=at_a.nonces.get(issuer))
        auth = (agent1["client_id"], agent1["client_secret"])
        with httpx.Client(transport=a) as via_a, httpx.Client(transport=b) as via_b:
            assert via_a.post(token_url, data=form, auth=auth, headers={"DPoP": proof}).status_code == 200
            replayed = via_b.post(token_url, data=form, auth=auth, headers={"DPoP": proof})
            again_at_a = via_a.post(token_url, data=form, auth=auth, headers={"DPoP": proof})
        assert (replayed.status_code, replayed.json().get("error")) == (400, "invalid_dpop_proof")
        assert replayed.headers["Cache-Control"] == "no-store"
        assert (again_at_a.status_code, again_at_a.json().get("error")) == (400, "invalid_dpop_proof")

        # The lifetime passes twice: the kept nonce is stale (wait until its window has gone).
        stale = at_a.nonces.get(issuer)
        while time.time() // LIFETIME < window_of(stale) + 2:
            time.sleep(0.2)
        before = len(b.answers)
        exchange(at_b)
        assert b.answers[before:] == [(400, "use_dpop_nonce"), (200, "")]
        fresh = at_b.nonces.get(issuer)
        assert fresh != stale and window_of(fresh) >= window_of(stale) + 2
        # ... and A takes the fresh nonce B sent at once.
        before = len(a.answers)
        exchange(at_a)
        assert a.answers[before:] == [(200, "")]
