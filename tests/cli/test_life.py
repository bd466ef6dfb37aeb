"""The life of an agent on the command line, as an operator lives it: register two agents,
find every exchange refused and be told why, add the rule, exchange, look, reissue a
secret, disable."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from delegation_idp.models import TokenLineage
from tests.cli.conftest import SCOPE, run
from tests.conftest import Agent
from tests.helpers import assert_oauth_error, decode
from tests.procs import ROOT, manage, site_env


def register(uri: str) -> tuple[Agent, str]:
    result = run("createagent", uri, "--redirect-uris", f"{uri}/callback", "--json")
    data = result.json()
    return Agent(uri, data["client_id"], data["client_secret"], uri, f"{uri}/callback"), result.stderr


def test_from_two_createagent_runs_to_a_working_chain(parties: Any) -> None:
    one, warned = register("https://one.example.com")
    two, _ = register("https://two.example.com")
    token = parties.user_token(one)

    # Two createagent runs, and every exchange is invalid_target: the warning said why.
    assert "createrule https://one.example.com" in warned
    assert_oauth_error(parties.exchange(one, token, two.uri), 400, "invalid_target")
    assert (
        run("explain", one.uri, "--audience", two.uri, "--scope", SCOPE, "--json").json()["reason"]
        == "no_rule"
    )

    run("createrule", one.uri, "--audience", two.uri, "--scope", SCOPE, "--from-user")
    assert run("explain", one.uri, "--audience", two.uri, "--scope", SCOPE, "--json").json()["allowed"]
    response = parties.exchange(one, token, two.uri)
    assert response.status_code == 200, response.content
    exchanged = response.json()["access_token"]
    assert decode(exchanged)[1]["act"] == {"sub": one.uri}

    listed = {row["uri"]: row for row in run("listagents", "--json").json()}
    assert listed[one.uri]["last_activity"]["decision"] == "granted"
    assert len(listed[one.uri]["rules"]) == 1 and listed[two.uri]["rules"] == []

    # A new secret: the old one is refused at once, the new one works.
    new_secret = run("reissue_secret", one.uri, "--json").json()["client_secret"]
    assert_oauth_error(parties.exchange(one, token, two.uri), 401, "invalid_client")
    renewed = Agent(one.name, one.client_id, new_secret, one.uri, one.redirect_uri)
    assert parties.exchange(renewed, token, two.uri).status_code == 200

    # Disabling the second agent revokes what names it.
    assert run("disableagent", two.uri, "--yes", "--json").json()["tokens_revoked"] == 2
    assert TokenLineage.objects.get(jti=decode(exchanged)[1]["jti"]).revocation_reason == "party_disabled"
    assert_oauth_error(parties.exchange(renewed, token, two.uri), 400, "invalid_target")


@pytest.mark.integration
def test_the_commands_as_processes_exit_non_zero_on_errors(tmp_path: Any) -> None:
    """Through ``manage.py`` itself: JSON on stdout, warnings on stderr, and a refusal of bad
    input is a non-zero exit with the message on stderr."""
    env = site_env(tmp_path, issuer="http://127.0.0.1:8000")
    manage(env, "migrate", "--verbosity", "0")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = cli("createagent", "https://one.example.com", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["uri"] == "https://one.example.com"
    assert "has no delegation rules yet" in created.stderr
    assert cli("createagent", "https://two.example.com", "--json").returncode == 0

    # Parties by their display names (createagent's default: the URI's host).
    rule = ("createrule", "one.example.com", "--audience", "two.example.com", "--scope", SCOPE)
    for args in (
        rule,  # a rule that could never match: neither --from-user nor --upstream
        ("explain", "one.example.com", "--audience", "two.example.com", "--scope", "x", "--user", "zed"),
        ("disableagent", "one.example.com"),  # no --yes and no terminal: aborted
    ):
        failed = cli(*args)
        assert failed.returncode == 1 and failed.stdout == "", (args, failed.stdout, failed.stderr)
        assert "CommandError: " in failed.stderr, args

    created = cli(*rule, "--from-user", "--json")
    assert created.returncode == 0 and json.loads(created.stdout)["created"], created.stderr
    explained = cli("explain", "one.example.com", "--audience", "two.example.com", "--scope", SCOPE)
    assert explained.returncode == 0 and explained.stdout.startswith("allowed by rule"), explained.stderr
