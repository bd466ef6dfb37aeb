"""Registering agents: a party plus its confidential django-oauth-toolkit client."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import transaction
from oauth2_provider.models import get_application_model

from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider import client_auth

__all__ = ["Registration", "allow", "register_party"]


@dataclass(frozen=True)
class Registration:
    party: Party
    client_id: str
    client_secret: str | None  # shown once; only its hash is stored


def generate_secret() -> str:
    """A 256-bit random client secret."""
    return secrets.token_urlsafe(32)


@transaction.atomic
def register_party(
    uri: str,
    name: str,
    kind: str = Party.AGENT,
    *,
    contact: str = "",
    redirect_uris: str = "",
    client_id: str | None = None,
    resource_prefixes: str = "",
    dpop_required: bool = False,
) -> Registration:
    """Create a party; agents and MCP servers also get a confidential client.

    The plain client secret is returned once and stored hashed by
    django-oauth-toolkit (``hash_client_secret``).
    """
    party = Party(
        uri=uri,
        name=name,
        kind=kind,
        contact=contact,
        resource_prefixes=resource_prefixes,
        dpop_required=dpop_required,
    )
    party.full_clean()
    secret = None
    if kind in (Party.AGENT, Party.MCP_SERVER):
        Application = get_application_model()
        secret = generate_secret()
        grant = (
            Application.GRANT_AUTHORIZATION_CODE if redirect_uris else Application.GRANT_CLIENT_CREDENTIALS
        )
        application = Application(
            name=name,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=grant,
            redirect_uris=redirect_uris,
            client_secret=secret,
            hash_client_secret=True,
            skip_authorization=False,
        )
        if client_id:
            application.client_id = client_id
        client_auth.store_secret(application, secret)  # keyed hash when CLIENT_SECRET_HMAC_KEY is set
        application.full_clean(exclude=["user"])
        application.save()
        party.application = application
    party.save()
    return Registration(
        party=party,
        client_id=party.application.client_id if party.application else "",
        client_secret=secret,
    )


def allow(
    actor: Party,
    audiences: list[Party],
    scope: str,
    *,
    direct_from_user: bool = False,
    upstream: list[Party] | None = None,
    max_depth: int | None = None,
    description: str = "",
) -> DelegationRule:
    """Add a delegation rule for ``actor``."""
    rule = DelegationRule.objects.create(
        actor=actor,
        max_scope=scope,
        allow_direct_from_user=direct_from_user,
        max_depth=max_depth,
        description=description,
    )
    rule.audiences.set(audiences)
    if upstream:
        rule.upstream_actors.set(upstream)
    return rule
