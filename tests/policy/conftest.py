"""Fixtures for the delegation-policy tests: a small world of agents, rules and a user."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.models import DelegationRule, Party
from tests.conftest import ACCESS_TOKEN_TYPE, Agent, authorize_code, code_form

SCOPE = "tasks.read tasks.write"


class World:
    """Registers parties and rules through the app's own API and talks to the token endpoint."""

    def __init__(self, client: Any, token_endpoint: Any, user: Any):
        self.client = client
        self.token_endpoint = token_endpoint
        self.user = user
        self.agents: dict[str, Agent] = {}

    @staticmethod
    def uri(name: str) -> str:
        return f"https://{name}.example.com"

    def agent(self, name: str, kind: str = Party.AGENT) -> Agent:
        from delegation_idp.provider.agents import register_party

        uri = self.uri(name)
        reg = register_party(uri, name, kind, redirect_uris=f"{uri}/callback")
        assert reg.client_secret
        agent = Agent(name, reg.client_id, reg.client_secret, uri, f"{uri}/callback")
        self.agents[name] = agent
        return agent

    def resource(self, name: str) -> Party:
        from delegation_idp.provider.agents import register_party

        return register_party(self.uri(name), name, Party.RESOURCE_SERVER).party

    @staticmethod
    def party(name_or_agent: Any) -> Party:
        if isinstance(name_or_agent, Party):
            return name_or_agent
        uri = name_or_agent.uri if isinstance(name_or_agent, Agent) else World.uri(name_or_agent)
        return Party.objects.get(uri=uri)

    def rule(
        self,
        actor: Any,
        audiences: list[Any],
        scope: str = SCOPE,
        *,
        direct: bool = False,
        upstream: list[Any] = (),  # type: ignore[assignment]
        users: list[Any] = (),  # type: ignore[assignment]
        groups: list[Any] = (),  # type: ignore[assignment]
        **fields: Any,
    ) -> DelegationRule:
        rule = DelegationRule.objects.create(
            actor=self.party(actor), max_scope=scope, allow_direct_from_user=direct, **fields
        )
        rule.audiences.set([self.party(a) for a in audiences])
        rule.upstream_actors.set([self.party(a) for a in upstream])
        rule.users.set(users)
        rule.groups.set(groups)
        return rule

    def user_token(self, agent: Agent, scope: str = SCOPE, user: Any = None) -> str:
        code, verifier = authorize_code(self.client, agent, user or self.user, scope)
        response = self.token_endpoint(
            code_form(agent, code, verifier),
            agent,
        )
        assert response.status_code == 200, response.content
        return response.json()["access_token"]

    def exchange(self, agent: Agent, token: str, audience: Any = None, **params: Any) -> Any:
        data: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
        }
        if audience is not None:
            data["audience"] = audience.uri if isinstance(audience, (Agent, Party)) else audience
        data.update(params)
        return self.token_endpoint(data, agent)


@pytest.fixture
def world(db: Any, client: Any, token_endpoint: Any) -> Any:
    from django.contrib.auth import get_user_model

    from delegation_idp.provider import keys

    # The process-wide key cache may still hold a key of an earlier test's
    # rolled-back database: start and end with this test's own key set.
    keys.keyset.invalidate()
    keys.ensure_current_key()
    user = get_user_model().objects.create_user("alice", "alice@example.com", "pw-alice-123")
    yield World(client, token_endpoint, user)
    keys.keyset.invalidate()
