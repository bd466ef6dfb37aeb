"""Every grant × every client kind × every audience kind: the exact answer.

A registered party (agent, MCP server, resource server with a linked client) addresses
its own tokens to itself only; an application that is not a party, to itself or to the
parties that allow-list it (RFC 8707 section 2); only agents and MCP servers exchange,
and only toward what a rule permits. Each refusal issues nothing and is audited.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from oauth2_provider.models import get_application_model

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.models import AuditEvent, Party
from delegation_idp.provider.agents import allow, register_party
from tests.conftest import ACCESS_TOKEN_TYPE, Agent, authorize_code, code_form
from tests.helpers import assert_oauth_error, decode, snapshot

GRANTS = ["authorization_code", "refresh_token", "client_credentials", "token_exchange"]
KINDS = ["agent", "mcp_server", "resource_server_client", "confidential", "public"]
AUDIENCES = ["own", "allow_listed", "other_agent", "unknown"]
ALLOWED = "https://allowed.example.com"
UNKNOWN = "https://unknown.example.com/api"
OK = (200, "")
TARGET = (400, "invalid_target")
NOT_AN_EXCHANGER = (400, "unauthorized_client")


def expected(grant: str, kind: str, audience: str) -> tuple[int, str] | None:
    """The answer, or None where the grant does not apply to the kind."""
    if grant == "client_credentials" and kind == "public":
        return None  # RFC 6749 section 4.4: confidential clients only
    if grant == "token_exchange":
        if kind not in ("agent", "mcp_server"):
            return NOT_AN_EXCHANGER
        return OK if audience == "allow_listed" else TARGET  # only where its rule points
    if audience == "own":
        return OK
    if audience == "allow_listed" and kind in ("confidential", "public"):
        return OK
    return TARGET  # a party's own tokens never name another party; nothing names the unknown


CASES = [
    pytest.param(grant, kind, audience, expected(grant, kind, audience), id=f"{grant}-{kind}-{audience}")
    for grant in GRANTS
    for kind in KINDS
    for audience in AUDIENCES
    if expected(grant, kind, audience) is not None
]


class World:
    def __init__(self, cast: Any, client: Any, token_endpoint: Any) -> None:
        self.cast, self.client, self.post = cast, client, token_endpoint
        self.allowed = Party.objects.create(uri=ALLOWED, name="allowed", kind=Party.RESOURCE_SERVER)

    def make(self, kind: str, grant: str) -> tuple[Agent, str]:
        """A client of ``kind`` able to use ``grant``; returns it and its own audience."""
        Application = get_application_model()
        name = f"{kind}-{secrets.token_hex(4)}"
        uri = f"https://{name}.example.com"
        redirect = f"{uri}/cb"
        django_grant = "client-credentials" if grant == "client_credentials" else "authorization-code"
        if kind in ("agent", "mcp_server"):
            registration = register_party(uri, name, kind, redirect_uris=redirect)
            app = registration.party.application
            secret = registration.client_secret or ""
            Application.objects.filter(pk=app.pk).update(authorization_grant_type=django_grant)
            allow(registration.party, [self.allowed], self.cast.scope, direct_from_user=True)
            own = uri
        else:
            secret = "" if kind == "public" else secrets.token_urlsafe(16)
            app = Application.objects.create(
                name=name,
                client_type="public" if kind == "public" else "confidential",
                authorization_grant_type=django_grant,
                redirect_uris=redirect,
                client_secret=secret,
                hash_client_secret=kind != "public",
            )
            own = app.client_id
            if kind == "resource_server_client":
                Party.objects.create(uri=uri, name=name, kind=Party.RESOURCE_SERVER, application=app)
                own = uri
        self.allowed.clients.add(app)  # allow-listed, whatever its kind
        return Agent(name, app.client_id, secret, uri, redirect), own

    def target(self, audience: str, own: str) -> str | None:
        return {
            "own": own,
            "allow_listed": ALLOWED,
            "other_agent": self.cast["agent2"].uri,
            "unknown": UNKNOWN,
        }[audience]

    def token_request(self, agent: Agent, data: dict[str, str], public: bool) -> Any:
        if public:
            return self.post({**data, "client_id": agent.client_id})
        return self.post(data, agent)

    def user_token(self, agent: Agent, public: bool) -> dict[str, Any]:
        code, verifier = authorize_code(self.client, agent, self.cast.user, self.cast.scope)
        response = self.token_request(agent, code_form(agent, code, verifier), public)
        assert response.status_code == 200, response.content
        return dict(response.json())


@pytest.mark.rfc("8707-2")
@pytest.mark.parametrize(("grant", "kind", "audience", "answer"), CASES)
def test_every_grant_client_and_audience(
    cast: Any, client: Any, token_endpoint: Any, grant: str, kind: str, audience: str, answer: Any
) -> None:
    world = World(cast, client, token_endpoint)
    agent, own = world.make(kind, grant)
    public = kind == "public"
    target = world.target(audience, own)
    non_party_own = audience == "own" and kind in ("confidential", "public")
    if grant == "token_exchange":
        subject = world.user_token(agent, public)["access_token"] if kind in ("agent", "mcp_server") else "x"
        data = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": target or "",
        }
    else:
        if grant == "authorization_code":
            code, verifier = authorize_code(client, agent, cast.user, cast.scope)
            data = code_form(agent, code, verifier)
        elif grant == "refresh_token":
            first = world.user_token(agent, public)
            data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        else:
            data = {"grant_type": "client_credentials"}
        if not non_party_own:  # a non-party's own audience is its client id: no resource sent
            data["resource"] = target or ""
    before = snapshot()
    response = world.token_request(agent, data, public)
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    status, error = answer
    if status == 200:
        assert response.status_code == 200, response.content
        claims = decode(response.json()["access_token"])[1]
        assert claims["aud"] == target, claims
        assert event.decision == "granted"
        if grant == "client_credentials":
            assert claims["sub"] == "urn:delegation-idp:client:" + agent.client_id
        else:
            assert claims["sub"] == cast.user.email
        return
    assert_oauth_error(response, status, error)
    assert snapshot() == before, "a refusal issued something"
    assert (event.decision, event.error) == ("denied", error)
    assert event.reason
