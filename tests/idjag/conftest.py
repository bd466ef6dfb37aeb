"""Fixtures for ID-JAGs: an external authorization server registered as a party, with a
delegation rule that lets agent1 obtain ID-JAGs for it, and the leg-1 request."""

from __future__ import annotations

from typing import Any

import pytest

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.idjag import TOKEN_TYPE
from delegation_idp.models import DelegationRule, Party
from tests.conftest import ACCESS_TOKEN_TYPE

AS_ISSUER = "https://as.tools.example.net"
MCP_RESOURCE = "https://mcp.tools.example.net/mcp"


@pytest.fixture
def external_as(cast: Any) -> Party:
    """The MCP server's authorization server in another trust domain; its resources are under
    ``https://mcp.tools.example.net``."""
    return Party.objects.create(
        uri=AS_ISSUER,
        name="Tools authorization server",
        kind=Party.AUTHORIZATION_SERVER,
        metadata_url=f"{AS_ISSUER}/.well-known/oauth-authorization-server",
        resource_prefixes="https://mcp.tools.example.net",
    )


@pytest.fixture
def id_jag_rule(cast: Any, external_as: Party) -> DelegationRule:
    """agent1 may obtain ID-JAGs for the external server, directly from a user token, with
    at most ``tasks.read``."""
    rule = DelegationRule.objects.create(
        actor=Party.objects.get(uri=cast["agent1"].uri),
        max_scope="tasks.read",
        allow_direct_from_user=True,
        description="agent1 reaches the tools domain",
    )
    rule.audiences.set([external_as])
    return rule


@pytest.fixture
def request_id_jag(token_endpoint: Any, cast: Any):
    """Leg 1: the token exchange for an ID-JAG, as the named agent."""

    def post(agent: str, subject_token: str, **params: Any) -> Any:
        form: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "requested_token_type": TOKEN_TYPE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": AS_ISSUER,
            "resource": MCP_RESOURCE,
        }
        form.update({k: v for k, v in params.items() if v is not None})
        for name in [k for k, v in params.items() if v is None]:
            form.pop(name, None)
        return token_endpoint(form, cast[agent])

    return post
