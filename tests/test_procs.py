"""The process harness itself: a real gunicorn instance serves the example site."""

import httpx
import pytest

from tests.conftest import free_port
from tests.procs import cluster, seed, site_env


@pytest.mark.integration
def test_gunicorn_instance_serves_metadata_and_exchanges(tmp_path):
    from example_project.demo_services.management.commands.demo import play

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer)
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        procs.gunicorn(port)
        metadata = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == issuer
        hops = play(issuer, cast)
        assert hops[-1]["claims"]["aud"] == cast["resource_server"]["uri"]
        assert hops[-1]["claims"]["act"]["sub"] == cast["agents"]["mcp-server1"]["uri"]
    assert all(proc.poll() is not None for _, proc in procs.processes)
