"""Policy edits govern the very next request in every web process, although each process
caches the policy: bulk updates from another process change the trigger-maintained version.

Two gunicorn instances (one with two workers) share the site's database; a third
process (``manage.py shell``) edits the policy between requests.
"""

from __future__ import annotations

import httpx
import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT
from example_project.demo_services.management.commands.demo import user_token
from tests.conftest import ACCESS_TOKEN_TYPE, free_port
from tests.procs import cluster, manage, seed, site_env

AGENT1 = "https://agent1.example.com"
EDIT = "from delegation_idp.models import DelegationRule, Party; {}"


@pytest.mark.integration
def test_policy_edits_take_effect_on_the_next_request_in_every_process(tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer)
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        first = procs.gunicorn(port, workers=2)
        second = procs.gunicorn()
        token = user_token(issuer, cast)
        agent1 = cast["agents"]["agent1"]
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": cast["agents"]["agent2"]["uri"],
        }

        def answers() -> set[tuple[int, str]]:
            """What every process says now (several requests each, to reach both workers)."""
            seen = set()
            for base in (first, second, first, second, first, first):
                response = httpx.post(
                    f"{base}/o/token/",
                    data=form,
                    auth=(agent1["client_id"], agent1["client_secret"]),
                    timeout=30,
                )
                seen.add((response.status_code, response.json().get("error", "")))
            return seen

        assert answers() == {(200, "")}
        manage(
            env,
            "shell",
            "-c",
            EDIT.format(f"DelegationRule.objects.filter(actor__uri='{AGENT1}').update(enabled=False)"),
        )
        assert answers() == {(400, "invalid_target")}
        manage(
            env,
            "shell",
            "-c",
            EDIT.format(f"DelegationRule.objects.filter(actor__uri='{AGENT1}').update(enabled=True)"),
        )
        assert answers() == {(200, "")}
        # Disabling the agent itself (without the admin's revocation signal) is seen at once too.
        manage(env, "shell", "-c", EDIT.format(f"Party.objects.filter(uri='{AGENT1}').update(enabled=False)"))
        assert answers() == {(400, "unauthorized_client")}
