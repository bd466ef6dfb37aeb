"""The live demo's cast: the seed's parties, plus what real services need.

* the MCP server and the resource server get RFC 8707 resource prefixes (the
  URLs they are served at), so a client can ask for a token with
  ``resource=<URL>`` and the provider maps it to the party's identity URI;
* the resource server gets a client at the introspection endpoint, linked to its
  party: the provider's introspection answers a token's own client, or the client
  linked to a party the token is addressed to (never a client id compared with ``aud``).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from oauth2_provider.models import get_application_model

from delegation_idp.provider.agents import generate_secret
from example_project.demo_services.seed import CAST, seed


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
    client_id, secret = register_introspection_client(cast["resource_server"]["uri"])
    cast["resource_server"].update({"client_id": client_id, "client_secret": secret})
    cast["agents"]["mcp-server1"]["resource_url"] = mcp_url
    cast["resource_server"]["resource_url"] = resource_url
    return cast
