"""Registering agents and what follows in their life: a party plus its confidential
django-oauth-toolkit client, a new secret, enabling and disabling, finding one by any name.

The admin and the management commands (``createagent``, ``reissue_secret``,
``disableagent``, ``enableagent`` and the others that name an agent) go through these
functions, so a secret is always stored the same way and a party is always disabled by the
one path that revokes its live tokens.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings

from delegation_idp.models import DelegationRule, Party, TokenLineage
from delegation_idp.provider import client_auth

__all__ = [
    "AmbiguousParty",
    "NoSuchParty",
    "PartyLookupError",
    "Registration",
    "SecretNotReissued",
    "allow",
    "find_party",
    "live_tokens_naming",
    "register_party",
    "reissue_secret",
    "set_enabled",
]

logger = logging.getLogger(__name__)


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
        if redirect_uris and oauth2_settings.OIDC_ENABLED:
            # A user signs in to it: with OpenID Connect on, its ID tokens are signed with the
            # site's RSA key (OIDC_RSA_PRIVATE_KEY), never with its client secret (HS256).
            application.algorithm = Application.RS256_ALGORITHM
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


# -- finding a party by any of its names ----------------------------------------------


class PartyLookupError(LookupError):
    """A reference that names no party, or more than one."""


class NoSuchParty(PartyLookupError):
    pass


class AmbiguousParty(PartyLookupError):
    def __init__(self, reference: str, matches: list[Party]):
        self.matches = matches
        named = ", ".join(str(p) for p in matches)
        super().__init__(f"{reference!r} names more than one party ({named}): use the identity URI.")


def find_party(reference: str, kinds: tuple[str, ...] | None = None) -> Party:
    """The party that ``reference`` names: its identity URI, else its client id or display
    name (case-insensitive), which must name one party only.

    The identity URI is unique, so it always works; a client id or a display name that two
    parties share is refused rather than guessed. ``kinds`` limits the search.
    """
    parties = Party.objects.select_related("application")
    if kinds is not None:
        parties = parties.filter(kind__in=kinds)
    by_uri = parties.filter(uri=reference).first()
    if by_uri is not None:
        return by_uri
    matches = list(parties.filter(Q(application__client_id=reference) | Q(name__iexact=reference))[:6])
    if not matches:
        raise NoSuchParty(f"No registered party is named {reference!r} (by identity URI, client id or name).")
    if len(matches) > 1:
        raise AmbiguousParty(reference, matches)
    return matches[0]


# -- a party's standing: its secret, enabled or not ------------------------------------


class SecretNotReissued(Exception):
    """The party has no client secret this app may replace."""


@transaction.atomic
def reissue_secret(party: Party) -> Registration:
    """Give ``party``'s client a new generated secret, returned once.

    Stored as :func:`register_party` stores one (a keyed hash under
    ``CLIENT_SECRET_HMAC_KEY``, else django-oauth-toolkit's password hash); the old secret
    stops authenticating with the commit. Tokens already issued stay valid: disabling the
    party revokes them.
    """
    application = party.application
    if application is None:
        raise SecretNotReissued(f"{party.uri} has no OAuth client, so no secret.")
    if application.client_type != application.CLIENT_CONFIDENTIAL:
        raise SecretNotReissued(f"{party.uri}'s client is public: it has no secret.")
    if getattr(application, "algorithm", "") == application.HS256_ALGORITHM:
        # Its secret is also the key of its HS256 ID tokens, stored in plain: not ours to replace.
        raise SecretNotReissued(f"{party.uri}'s secret signs its HS256 ID tokens: change it in the admin.")
    secret = generate_secret()
    client_auth.store_secret(application, secret)
    application.save(update_fields=["client_secret", "hash_client_secret", "updated"])
    logger.info("client secret reissued for %s (client %s)", party.uri, application.client_id)
    return Registration(party=party, client_id=application.client_id, client_secret=secret)


def set_enabled(party: Party, enabled: bool) -> bool:
    """Enable or disable ``party``; True if that changed it.

    One ``save()`` per party, as the admin's *Enable* and *Disable* actions do: disabling
    sends the signal whose receiver revokes every live token naming the party
    (:mod:`delegation_idp.lineage.receivers`).
    """
    if party.enabled == enabled:
        return False
    party.enabled = enabled
    party.save()
    return True


def live_tokens_naming(party: Party) -> int:
    """How many unexpired, unrevoked tokens name ``party`` as their client, an audience or an
    actor: those that disabling it revokes (for confirmation prompts)."""
    return TokenLineage.objects.filter(
        parties__contains=f"|{party.uri}|", revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).count()
