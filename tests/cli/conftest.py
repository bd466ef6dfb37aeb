"""Fixtures for the command-line tests: a command run in process, and a small cast."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.models import Party
from delegation_idp.provider.agents import register_party
from tests.conftest import ACCESS_TOKEN_TYPE, Agent, authorize_code, code_form

SCOPE = "tasks.read tasks.write"


@dataclass(frozen=True)
class Output:
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(name: str, *args: str) -> Output:
    """``manage.py <name> <args>`` in this process: its stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return Output(out.getvalue(), err.getvalue())


@dataclass
class Parties:
    """Two agents, Alpha and Beta (authorization-code clients), a resource server, Store, and
    a user, alice; no rules. Talks to the token endpoint as the agents."""

    alpha: Agent
    beta: Agent
    store: Party
    user: Any
    client: Any
    token_endpoint: Any

    def user_token(self, agent: Agent, scope: str = SCOPE) -> str:
        code, verifier = authorize_code(self.client, agent, self.user, scope)
        response = self.token_endpoint(code_form(agent, code, verifier), agent)
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    def exchange(self, agent: Agent, token: str, audience: str, **params: str) -> Any:
        data = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": audience,
            **params,
        }
        return self.token_endpoint(data, agent)


def register_agent(name: str, display: str) -> Agent:
    uri = f"https://{name}.example.com"
    reg = register_party(uri, display, redirect_uris=f"{uri}/callback")
    assert reg.client_secret
    return Agent(name, reg.client_id, reg.client_secret, uri, f"{uri}/callback")


@pytest.fixture
def parties(db: Any, client: Any, token_endpoint: Any) -> Iterator[Parties]:
    from django.contrib.auth import get_user_model

    from delegation_idp.provider import keys

    # The process-wide key cache may hold a key of an earlier test's rolled-back database.
    keys.keyset.invalidate()
    keys.ensure_current_key()
    user = get_user_model().objects.create_user("alice", "alice@example.com", "pw-alice-123")
    store = register_party("https://store.example.com", "Store", Party.RESOURCE_SERVER).party
    yield Parties(
        register_agent("alpha", "Alpha"),
        register_agent("beta", "Beta"),
        store,
        user,
        client,
        token_endpoint,
    )
    keys.keyset.invalidate()
