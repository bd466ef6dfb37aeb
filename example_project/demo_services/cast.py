"""The live demo's cast: the seed's parties, plus what real services need.

* the MCP server and the resource server get RFC 8707 resource prefixes (the
  URLs they are served at), so a client can ask for a token with
  ``resource=<URL>`` and the provider maps it to the party's identity URI;
* the resource server gets a client at the introspection endpoint. A resource
  server party is an audience only (no client of its own), and the provider's
  introspection answers a token's client or audience: an introspection client
  whose ``client_id`` is the resource server's identity URI is recognised as
  that audience.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from oauth2_provider.models import get_application_model

from delegation_idp.agents import generate_secret
from delegation_idp.demo import CAST, seed


@transaction.atomic
def register_introspection_client(uri: str) -> tuple[str, str]:
    """(client_id, client_secret) of ``uri``'s introspection client; a new secret every call."""
    from delegation_idp import client_auth

    Application = get_application_model()
    secret = generate_secret()
    app = Application.objects.filter(client_id=uri).first() or Application(
        client_id=uri,
        name=f"{uri} (introspection)",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    client_auth.store_secret(app, secret)
    app.save()
    return uri, secret


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
