"""The seed's cast (user -> agent1 -> agent2 -> mcp-server1 -> resource server),
used by ``manage.py seed_demo`` and ``manage.py demo``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from oauth2_provider.models import get_application_model

from delegation_idp.conf import idp_settings
from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider import client_auth, keys
from delegation_idp.provider.agents import allow, generate_secret, register_party

SCOPE = "tasks.read tasks.write"
USERNAME = "user"
EMAIL = "user@example.com"
PASSWORD = "correct-horse-battery-staple"
CAST = {
    "agent1": ("https://agent1.example.com", "Agent 1 (orchestrator)", Party.AGENT),
    "agent2": ("https://agent2.example.com", "Agent 2", Party.AGENT),
    "mcp-server1": ("https://mcp-server1.example.com", "MCP server 1", Party.MCP_SERVER),
}
RESOURCE_SERVER = "https://resource-server.example.com"


def redirect_uri(name: str) -> str:
    return f"{CAST[name][0]}/callback"


@transaction.atomic
def seed(resource_prefixes: str = "") -> dict[str, Any]:
    """Create (or reset) the cast and print-ready credentials. Idempotent: the same
    parties and rules every time; client secrets are reissued, since only their
    hashes are stored."""
    keys.ensure_current_key()
    User = get_user_model()
    email_field = User.get_email_field_name()
    # Sites that sign in by email (USERNAME_FIELD is the email field) get the email as login.
    login = EMAIL if User.USERNAME_FIELD == email_field else USERNAME
    user = User.objects.filter(**{User.USERNAME_FIELD: login}).first()
    if user is None:
        user = User(**{User.USERNAME_FIELD: login})
    if hasattr(user, email_field):
        setattr(user, email_field, EMAIL)
    user.is_active = True
    user.set_password(PASSWORD)
    user.save()

    Application = get_application_model()
    agents: dict[str, Any] = {}
    parties: dict[str, Party] = {}
    for name, (uri, display, kind) in CAST.items():
        party = Party.objects.filter(uri=uri).select_related("application").first()
        secret = generate_secret()
        if party is None or party.application is None:
            if party is not None:
                party.delete()
            reg = register_party(uri, display, kind, redirect_uris=redirect_uri(name))
            party = reg.party
            secret = reg.client_secret or secret
        else:
            app = party.application
            client_auth.store_secret(app, secret)
            app.redirect_uris = redirect_uri(name)
            app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
            app.save()
            party.enabled = True
            party.save()
        parties[name] = party
        assert party.application is not None
        agents[name] = {
            "client_id": party.application.client_id,
            "client_secret": secret,
            "uri": uri,
            "redirect_uri": redirect_uri(name),
        }
    resource, _ = Party.objects.update_or_create(
        uri=RESOURCE_SERVER,
        defaults={
            "name": "Resource server",
            "kind": Party.RESOURCE_SERVER,
            "enabled": True,
            "resource_prefixes": resource_prefixes,
        },
    )

    DelegationRule.objects.filter(actor__in=parties.values()).delete()
    allow(
        parties["agent1"],
        [parties["agent2"]],
        SCOPE,
        direct_from_user=True,
        description="agent1 hands the user's task to agent2",
    )
    allow(
        parties["agent2"],
        [parties["mcp-server1"]],
        SCOPE,
        upstream=[parties["agent1"]],
        description="agent2 calls the MCP server for agent1's task",
    )
    allow(
        parties["mcp-server1"],
        [resource],
        SCOPE,
        upstream=[parties["agent2"]],
        description="the MCP server calls the resource server for agent2",
    )
    return {
        "issuer": idp_settings.ISSUER,
        "scope": SCOPE,
        "user": {"username": login, "password": PASSWORD},
        "agents": agents,
        "resource_server": {"uri": RESOURCE_SERVER},
    }
