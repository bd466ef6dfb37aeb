"""One approval, one token: many polls for the same approved ``auth_req_id`` at once, across two
gunicorn instances on one PostgreSQL database, issue exactly one token (the request is taken in
the issuing transaction by a conditional update)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.lineage.test_race_postgres import live_rows, race_database, sign_in  # noqa: F401 - fixture
from tests.procs import cluster, manage, seed, site_env

pytestmark = pytest.mark.integration

ACCESS = "urn:ietf:params:oauth:token-type:access_token"
CIBA = "urn:openid:params:grant-type:ciba"


def test_concurrent_polls_of_one_approval_issue_one_token(tmp_path: Any, race_database: str) -> None:  # noqa: F811
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = site_env(tmp_path, issuer=issuer, database_url=race_database)
    with cluster(tmp_path, env) as procs:
        cast = seed(env)
        agents = cast["agents"]
        agent1, agent2 = agents["agent1"], agents["agent2"]
        manage(
            env,
            "shell",
            "-c",
            "from delegation_idp.models import DelegationRule\n"
            f"r = DelegationRule.objects.get(actor__uri={agent1['uri']!r},"
            f" audiences__uri={agent2['uri']!r})\n"
            "r.approval = 'always'; r.save()",
        )
        urls = [procs.gunicorn(port, workers=2), procs.gunicorn(workers=2)]
        root = sign_in(procs, issuer, cast)
        auth = (agent1["client_id"], agent1["client_secret"])
        asked = httpx.post(
            f"{issuer}/o/bc-authorize/",
            data={
                "subject_token": root,
                "subject_token_type": ACCESS,
                "audience": agent2["uri"],
                "binding_message": "race",
            },
            auth=auth,
        )
        assert asked.status_code == 200, asked.text
        auth_req_id = asked.json()["auth_req_id"]
        manage(
            env,
            "shell",
            "-c",
            "from delegation_idp.ciba import approvals\n"
            "from delegation_idp.models import ApprovalRequest\n"
            "a = ApprovalRequest.objects.get()\n"
            "assert approvals.decide(a.pk, a.user, approve=True) is not None",
        )
        barrier = threading.Barrier(8)

        def one(index: int) -> tuple[int, dict[str, Any]]:
            with httpx.Client(timeout=60, auth=auth) as http:
                barrier.wait()
                response = http.post(
                    f"{urls[index % 2]}/o/token/", data={"grant_type": CIBA, "auth_req_id": auth_req_id}
                )
                return response.status_code, response.json()

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(one, range(8)))
        issued = [body for status, body in answers if status == 200]
        assert len(issued) == 1, answers
        refused = {body["error"] for status, body in answers if status != 200}
        assert refused <= {"invalid_grant", "slow_down"}, answers
        assert live_rows(race_database, "approval_id IS NOT NULL", ()) == 1
        state = manage(
            env,
            "shell",
            "-c",
            "import json\nfrom delegation_idp.models import ApprovalRequest\n"
            "a = ApprovalRequest.objects.get()\nprint(json.dumps([a.status, a.issued_jti]))",
        ).stdout
        status, jti = json.loads(state.strip().splitlines()[-1])
        assert status == "issued" and jti
