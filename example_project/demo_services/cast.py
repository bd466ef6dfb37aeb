"""The live demo's cast: the seed's parties, plus what real services need.

* the MCP server and the resource server get RFC 8707 resource prefixes (the
  URLs they are served at), so a client can ask for a token with
  ``resource=<URL>`` and the provider maps it to the party's identity URI;
* the resource server gets a client at the introspection endpoint, linked to its
  party: the provider's introspection answers a token's own client, or the client
  linked to a party the token is addressed to (never a client id compared with ``aud``);
* the sensitive hop: agent2 may address the resource server directly (its payments,
  ``tasks.write``) for agent1's task, but only with the user's approval, every time
  (OpenID CIBA: ``approval`` "always", no reuse).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from oauth2_provider.models import get_application_model

from delegation_idp.provider.agents import allow, generate_secret
from example_project.demo_services.seed import CAST, RESOURCE_SERVER, seed


@transaction.atomic
def register_introspection_client(uri: str) -> tuple[str, str]:
    """(client_id, client_secret) of the introspection client linked to the resource server
    party ``uri``; a new secret every call. The provider's introspection recognises the
    audience by that link (registered identity), never by a client id that reads like the
    URI, so the client id is generated."""
    from delegation_idp.models import Party
    from delegation_idp.provider import client_auth

    Application = get_application_model()
    party = Party.objects.select_related("application").get(uri=uri)
    secret = generate_secret()
    app = party.application or Application(
        name=f"{uri} (introspection)",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    client_auth.store_secret(app, secret)
    app.save()
    if party.application_id != app.pk:
        party.application = app
        party.save(update_fields=["application", "updated"])
    return app.client_id, secret


def seed_live(mcp_url: str = "", resource_url: str = "") -> dict[str, Any]:
    """The seed's cast with resource prefixes and the resource server's introspection client."""
    from delegation_idp.models import Party

    cast = seed(resource_prefixes=resource_url)
    if mcp_url:
        Party.objects.filter(uri=CAST["mcp-server1"][0]).update(resource_prefixes=mcp_url)
    seed_payment_rule()
    client_id, secret = register_introspection_client(cast["resource_server"]["uri"])
    cast["resource_server"].update({"client_id": client_id, "client_secret": secret})
    cast["agents"]["mcp-server1"]["resource_url"] = mcp_url
    cast["resource_server"]["resource_url"] = resource_url
    return cast


PAYMENT_RULE = "agent2 initiates a payment for agent1's task: the user approves each one"


def seed_payment_rule() -> None:
    """agent2 -> the resource server (its payments), for agent1's task, each time with the
    user's approval (``approval`` "always", ``approval_reuse_seconds`` 0). Needs the seed."""
    from delegation_idp.models import DelegationRule, Party

    agent2 = Party.objects.get(uri=CAST["agent2"][0])
    resource = Party.objects.get(uri=RESOURCE_SERVER)
    rule = allow(
        agent2,
        [resource],
        "tasks.write",
        upstream=[Party.objects.get(uri=CAST["agent1"][0])],
        description=PAYMENT_RULE,
    )
    rule.approval, rule.approval_reuse_seconds = DelegationRule.APPROVAL_ALWAYS, 0
    rule.save(update_fields=["approval", "approval_reuse_seconds"])


STOCK_MCP_CLIENT = "https://stock-mcp-client.example.com"
STOCK_MCP_CLIENT_SCOPE = "tasks.read"
# A native client's loopback redirect (RFC 8252 section 7.3); nothing listens there: the
# headless user reads the redirect instead of following it.
STOCK_MCP_REDIRECT_URI = "http://127.0.0.1:8976/callback"


@transaction.atomic
def seed_stock_mcp_client(redirect_uri: str = STOCK_MCP_REDIRECT_URI) -> dict[str, Any]:
    """A stock MCP client, pre-registered: an unmodified MCP SDK client logs in with it.

    * a public client (no secret; authorization code with S256 PKCE, RFC 7636) with a
      loopback redirect URI, linked to a party of kind agent;
    * its rule: it may address the user's token to mcp-server1 directly (the token names the
      RFC 8707 resource the client asked for), at most ``tasks.read``;
    * mcp-server1's exchange rule continues chains from it as well as from agent2, so the
      resource server sees ``act`` = mcp-server1 <- the stock client.

    Needs the seed's cast (``seed`` or ``seed_live``) first. Idempotent: one client, one
    party and one rule however often it runs; the redirect URI is the last one given.
    """
    from delegation_idp.models import DelegationRule, Party

    Application = get_application_model()
    mcp_server = Party.objects.get(uri=CAST["mcp-server1"][0])
    party = Party.objects.filter(uri=STOCK_MCP_CLIENT).select_related("application").first()
    app = party.application if party is not None and party.application is not None else Application()
    app.name = "Stock MCP client"
    app.client_type = Application.CLIENT_PUBLIC
    app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
    app.redirect_uris = redirect_uri
    app.client_secret = ""
    app.hash_client_secret = False
    app.skip_authorization = False
    app.full_clean(exclude=["user"])
    app.save()
    if party is None:
        party = Party(uri=STOCK_MCP_CLIENT, kind=Party.AGENT)
    party.name, party.kind, party.enabled, party.application = "Stock MCP client", Party.AGENT, True, app
    party.full_clean()
    party.save()
    DelegationRule.objects.filter(actor=party).delete()
    allow(
        party,
        [mcp_server],
        STOCK_MCP_CLIENT_SCOPE,
        direct_from_user=True,
        description="a stock MCP client addresses the user's token to the MCP server",
    )
    for rule in DelegationRule.objects.filter(actor=mcp_server):
        rule.upstream_actors.add(party)
    return {
        "client_id": app.client_id,
        "uri": STOCK_MCP_CLIENT,
        "redirect_uri": redirect_uri,
        "scope": STOCK_MCP_CLIENT_SCOPE,
    }
