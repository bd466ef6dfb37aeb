"""Registered parties, delegation rules, signing keys, token lineage and audit events.

Why one module over 400 lines: Django's convention, one ``models.py`` per app (its
migrations and swappable-model settings name ``delegation_idp.<Model>``).
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings

from delegation_idp.core.actchain import chain_from_act
from delegation_idp.core.approval import ApprovalView
from delegation_idp.core.policy import PartyView, RuleView, scope_set
from delegation_idp.idjag import claims as idjag
from delegation_idp.jose import ASYMMETRIC_ALGORITHMS


def validate_identity_uri(value: str) -> None:
    """An absolute https URL without query or fragment; http only for loopback hosts."""
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValidationError(_("Enter an absolute URL."), code="invalid") from exc
    if value != value.strip() or any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in value):
        raise ValidationError(_("The URL must be plain ASCII without spaces."), code="invalid")
    if not parts.scheme or not parts.hostname:
        raise ValidationError(_("Enter an absolute URL."), code="invalid")
    if parts.query or parts.fragment or parts.username or parts.password or "|" in value:
        raise ValidationError(_("The URL must not carry a query, fragment or credentials."), code="invalid")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise ValidationError(_("Use https (http is allowed for loopback hosts only)."), code="insecure")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Party(models.Model):
    """An agent, MCP server, resource server or external authorization server, known by its
    identity URI.

    Agents and MCP servers that call the token endpoint are linked to a
    confidential django-oauth-toolkit application. The URI is what tokens name
    in ``aud`` and in ``act.sub``. An external authorization server's URI is its issuer
    identifier: the ``aud`` of the ID-JAGs addressed to it (``metadata_url`` and
    ``client_ids`` are its own fields).
    """

    AGENT = "agent"
    MCP_SERVER = "mcp_server"
    RESOURCE_SERVER = "resource_server"
    AUTHORIZATION_SERVER = idjag.AUTHORIZATION_SERVER
    KIND_CHOICES = [
        (AGENT, _("Agent")),
        (MCP_SERVER, _("MCP server")),
        (RESOURCE_SERVER, _("Resource server (audience only)")),
        (AUTHORIZATION_SERVER, _("External authorization server (ID-JAG audience)")),
    ]
    # How the party came to be: registered by an admin (or createagent), or arrived by
    # itself, through RFC 7591 dynamic registration or a client ID metadata document.
    BY_ADMIN = "admin"
    BY_DCR = "dcr"
    BY_CIMD = "cimd"
    REGISTRATION_CHOICES = [
        (BY_ADMIN, _("registered by an admin")),
        (BY_DCR, _("dynamic client registration (RFC 7591)")),
        (BY_CIMD, _("client ID metadata document")),
    ]

    uri = models.CharField(_("identity URI"), max_length=255, unique=True, validators=[validate_identity_uri])
    name = models.CharField(_("display name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=20, choices=KIND_CHOICES, default=AGENT)
    contact = models.CharField(_("owner or contact"), max_length=254, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        verbose_name=_("OAuth client"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="delegation_party",
    )
    resource_prefixes = models.TextField(
        _("resource URL prefixes"),
        blank=True,
        help_text=_("RFC 8707 resource URLs starting with one of these (one a line) mean this party."),
    )
    clients = models.ManyToManyField(
        oauth2_settings.APPLICATION_MODEL,
        verbose_name=_("clients that may address tokens to this party"),
        related_name="delegation_audiences",
        blank=True,
        help_text=_(
            "Applications that are not registered parties and may name this party as the "
            "RFC 8707 resource of their own tokens. Registered agents never may: they reach "
            "other parties by token exchange only."
        ),
    )
    jwks = models.JSONField(
        _("client JWK set"),
        null=True,
        blank=True,
        help_text=_("Public keys for private_key_jwt client authentication (RFC 7523)."),
    )
    registration = models.CharField(
        _("registered through"),
        max_length=10,
        choices=REGISTRATION_CHOICES,
        default=BY_ADMIN,
        db_index=True,
        help_text=_(
            "A client that registered itself is governed by the registration rules only, until "
            "an admin promotes it to a fully registered agent with rules of its own."
        ),
    )
    dpop_required = models.BooleanField(
        _("DPoP required"),
        default=False,
        help_text=_(
            "Every token this client requests must be bound to its key with DPoP (RFC 9449): "
            "a token request without a DPoP proof is refused."
        ),
    )
    metadata_url = models.CharField(
        _("authorization server metadata URL"),
        max_length=255,
        blank=True,
        validators=[validate_identity_uri],
        help_text=_("External authorization servers only: its RFC 8414 metadata document, if known."),
    )
    client_ids = models.JSONField(
        _("client ids at this authorization server"),
        default=dict,
        blank=True,
        help_text=_(
            "External authorization servers only: the client id each agent (by identity URI) has "
            "there, which its ID-JAGs carry as client_id. An agent not listed keeps its own client id."
        ),
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("registered party")
        verbose_name_plural = _("registered parties")
        ordering = ["uri"]

    def __str__(self) -> str:
        return f"{self.name} <{self.uri}>"

    def prefixes(self) -> list[str]:
        return [line.strip() for line in self.resource_prefixes.splitlines() if line.strip()]

    def clean(self) -> None:
        for prefix in self.prefixes():
            validate_identity_uri(prefix)
        if self.kind != self.AUTHORIZATION_SERVER and (self.metadata_url or self.client_ids):
            raise ValidationError(
                _("Only an external authorization server has a metadata URL or client ids.")
            )
        if self.kind == self.AUTHORIZATION_SERVER and self.application_id is not None:
            raise ValidationError(_("An external authorization server is not a client of this provider."))
        if not isinstance(self.client_ids, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in self.client_ids.items()
        ):
            raise ValidationError(_("Client ids map an agent's identity URI to a client id."))
        # A resource server may link a client: it authenticates to introspection
        # with it, and can never exchange (validators.client_may_exchange).

    def as_view(self) -> PartyView:
        return PartyView(
            uri=self.uri,
            enabled=self.enabled,
            kind=self.kind,
            self_registered=self.self_registered,
            dpop_required=self.dpop_required,
        )

    @property
    def self_registered(self) -> bool:
        return self.registration != self.BY_ADMIN

    def client_id_for(self, agent_uri: str, own_client_id: str) -> str:
        """The client id that the agent ``agent_uri`` has at this external authorization server
        (the ``client_id`` of its ID-JAGs): as the admin mapped it, else its own."""
        mapped = self.client_ids.get(agent_uri) if isinstance(self.client_ids, dict) else None
        return mapped if isinstance(mapped, str) and mapped else own_client_id


def party_of(client: Any) -> Party | None:
    """The registered party linked to a django-oauth-toolkit application, or None.

    Django caches the reverse one-to-one on the instance, misses included, so
    repeated calls during one request cost one query at most.
    """
    if client is None:
        return None
    try:
        return client.delegation_party  # type: ignore[no-any-return]
    except (Party.DoesNotExist, AttributeError):
        return None


class DelegationRule(models.Model):
    """What one actor may pass on: to which audiences, which scopes, from whom, for whom."""

    actor = models.ForeignKey(
        Party,
        on_delete=models.CASCADE,
        related_name="delegation_rules",
        limit_choices_to={"kind__in": [Party.AGENT, Party.MCP_SERVER]},
    )
    audiences = models.ManyToManyField(Party, related_name="+", verbose_name=_("target audiences"))
    max_scope = models.CharField(
        _("largest scope"), max_length=1000, help_text=_("Space-separated scopes it may pass on.")
    )
    max_depth = models.PositiveSmallIntegerField(
        _("largest chain depth"),
        null=True,
        blank=True,
        help_text=_("The deepest position in a chain at which it may still act (1 = directly for the user)."),
    )
    allow_direct_from_user = models.BooleanField(_("directly from a user token"), default=False)
    upstream_actors = models.ManyToManyField(
        Party, related_name="+", blank=True, verbose_name=_("may continue a chain from")
    )
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)
    groups = models.ManyToManyField("auth.Group", related_name="+", blank=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=255, blank=True)
    position = models.PositiveIntegerField(
        _("precedence"),
        blank=True,
        help_text=_(
            "Among the actor's rules, the lowest number is tried first and the first that allows "
            "decides. Empty: after the actor's other rules."
        ),
    )
    # The user in the loop (OpenID CIBA): a hop this rule allows may need its user's approval.
    APPROVAL_NEVER, APPROVAL_ALWAYS, APPROVAL_ABOVE = "never", "always", "above"
    APPROVAL_CHOICES = [
        (APPROVAL_NEVER, _("never")),
        (APPROVAL_ALWAYS, _("always")),
        (APPROVAL_ABOVE, _("for the scopes or from the depth below")),
    ]
    approval = models.CharField(
        _("user's approval"),
        max_length=10,
        choices=APPROVAL_CHOICES,
        default=APPROVAL_NEVER,
        help_text=_(
            "Whether a hop this rule allows waits until the user approves it, asked for with a "
            "backchannel authentication request (OpenID CIBA)."
        ),
    )
    approval_scopes = models.CharField(
        _("scopes that need approval"),
        max_length=1000,
        blank=True,
        help_text=_("Space-separated. A hop granted any of them needs the user's approval."),
    )
    approval_min_depth = models.PositiveSmallIntegerField(
        _("approval from depth"),
        null=True,
        blank=True,
        help_text=_("A hop at this depth of the chain or deeper needs the user's approval."),
    )
    approval_lifetime = models.PositiveIntegerField(
        _("approval request lifetime (seconds)"),
        null=True,
        blank=True,
        help_text=_("How long a request waits for the user. Empty: APPROVAL_REQUEST_LIFETIME."),
    )
    approval_reuse_seconds = models.PositiveIntegerField(
        _("reuse an approval for (seconds)"),
        default=0,
        help_text=_(
            "An identical request (same user, chain, audience, scope and details) within this "
            "many seconds of an approval is approved without asking again. 0: never reused."
        ),
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("delegation rule")
        # The order the evaluator tries an actor's rules in (policy.explain): lowest position first.
        ordering = ["actor__uri", "position", "id"]

    def __str__(self) -> str:
        if self.description:
            return self.description
        if self.actor_id is None:
            return str(_("new delegation rule"))
        audiences = ", ".join(p.name or p.uri for p in self.audiences.all()) if self.pk else ""
        return f"{self.actor.name or self.actor.uri} → {audiences or '…'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.position is None:
            # A new rule comes after the actor's other rules, as it did when ids set the order.
            last = DelegationRule.objects.filter(actor_id=self.actor_id).aggregate(models.Max("position"))
            self.position = (last["position__max"] or 0) + 1
        super().save(*args, **kwargs)

    def as_view(self) -> RuleView:
        """The policy view. Uses prefetched relations when present."""
        return RuleView(
            id=self.pk,
            actor=self.actor.uri,
            audiences=frozenset(p.uri for p in self.audiences.all()),
            max_scope=scope_set(self.max_scope),
            max_depth=self.max_depth,
            upstream=frozenset(p.uri for p in self.upstream_actors.all()),
            direct_from_user=self.allow_direct_from_user,
            user_ids=frozenset(u.pk for u in self.users.all()),
            group_ids=frozenset(g.pk for g in self.groups.all()),
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            enabled=self.enabled,
            position=self.position or 0,
            approval=self.approval_view(),
        )

    def approval_view(self) -> ApprovalView | None:
        """When a hop this rule allows needs its user's approval (None: never)."""
        return approval_view(
            self.approval,
            self.approval_scopes,
            self.approval_min_depth,
            self.approval_lifetime,
            self.approval_reuse_seconds,
        )


def approval_view(
    mode: str, scopes: str, min_depth: int | None, lifetime: int | None, reuse_seconds: int
) -> ApprovalView | None:
    """A rule's approval columns as the policy sees them (None: approval is never needed)."""
    if mode == DelegationRule.APPROVAL_ALWAYS:
        return ApprovalView(always=True, lifetime=lifetime, reuse_seconds=reuse_seconds)
    if mode == DelegationRule.APPROVAL_ABOVE and (scopes.split() or min_depth is not None):
        return ApprovalView(
            scopes=scope_set(scopes), min_depth=min_depth, lifetime=lifetime, reuse_seconds=reuse_seconds
        )
    return None


class RegistrationRule(models.Model):
    """What clients that register themselves may reach: the default delegation rules of the
    parties that arrive through a client ID metadata document or dynamic registration.

    Such a party is governed by the enabled rules that match how it registered and its
    host, and by nothing broader: each matching rule acts as a rule of its own "directly
    from a user token" for these audiences with at most this scope (see
    :mod:`delegation_idp.provider.self_registered`). ``hosts`` use Django's ``ALLOWED_HOSTS``
    syntax: ``mcp.example.com``, ``.example.com`` (the domain and its subdomains), ``*``.
    The host is the metadata document URL's (CIMD), or every redirect URI's (DCR).
    """

    via = models.CharField(
        _("registered through"),
        max_length=10,
        choices=[
            (Party.BY_CIMD, _("client ID metadata document")),
            (Party.BY_DCR, _("dynamic registration")),
        ],
        default=Party.BY_CIMD,
    )
    hosts = models.TextField(
        _("hosts"),
        help_text=_("One a line, in ALLOWED_HOSTS syntax: host, .domain (with subdomains), or *."),
    )
    audiences = models.ManyToManyField(Party, related_name="+", verbose_name=_("target audiences"))
    max_scope = models.CharField(_("largest scope"), max_length=500)
    enabled = models.BooleanField(_("enabled"), default=True)
    description = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("registration rule")
        verbose_name_plural = _("registration rules")
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.description or f"{self.get_via_display()}: {' '.join(self.host_list())}"

    def host_list(self) -> list[str]:
        return [line.strip().lower() for line in self.hosts.splitlines() if line.strip()]


class PolicyVersion(models.Model):
    """One row whose ``version`` changes with every write to the policy tables.

    Database triggers (installed by migrations 0002 and 0004 on SQLite and PostgreSQL)
    give it a new random value whenever a party, a delegation rule, one of the rules'
    link tables or a party's client allow-list is inserted, updated or deleted: through the ORM, a bulk
    ``QuerySet.update()``, raw SQL or another process alike. Random values, not a
    counter, so a rolled-back change can never hand its number to a later one.
    :mod:`delegation_idp.provider.policy_store` keys its per-process policy cache on it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("policy version")

    def __str__(self) -> str:
        return f"policy version {self.version}"


class SigningKey(models.Model):
    """A key of the provider's own key set. Exactly one is ``current`` at a time."""

    NEXT = "next"
    CURRENT = "current"
    RETIRED = "retired"
    REVOKED = "revoked"
    STATE_CHOICES = [
        (NEXT, _("next (published, not signing yet)")),
        (CURRENT, _("current (signing)")),
        (RETIRED, _("retired (published, not signing)")),
        (REVOKED, _("revoked (compromised, unpublished)")),
    ]

    kid = models.CharField(max_length=128, unique=True, editable=False)
    alg = models.CharField(max_length=10, editable=False)
    state = models.CharField(max_length=10, choices=STATE_CHOICES, db_index=True)
    public_jwk = models.JSONField(editable=False)
    private_key = models.BinaryField(editable=False, help_text="Encrypted with a key-encryption key.")
    created = models.DateTimeField(default=timezone.now, editable=False)
    activates_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    remove_after = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="current"), name="delegation_idp_one_current_key"
            )
        ]
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.alg} {self.kid[:12]}… ({self.state})"

    @property
    def published(self) -> bool:
        return self.state in (self.NEXT, self.CURRENT, self.RETIRED)


class OpaqueRedemption(models.Model):
    """An authorization code redeemed for one of django-oauth-toolkit's opaque access tokens
    (an application outside ``JWT_ACCESS_TOKENS``), which has no lineage row to carry the
    code's hash: a replay of the code finds it here and revokes the access token and its
    refresh-token family (RFC 6749 section 10.5). Swept with the lineage records."""

    code_hash = models.CharField(max_length=64, db_index=True, editable=False)
    access_token = models.ForeignKey(
        oauth2_settings.ACCESS_TOKEN_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        db_constraint=False,
    )
    token_family = models.UUIDField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("opaque token's code redemption")

    def __str__(self) -> str:
        return f"code {self.code_hash[:12]}…"


class AuthorizationCodeBinding(models.Model):
    """The DPoP key an authorization request bound its code to with ``dpop_jkt`` (RFC 9449
    section 10): only a token request with a proof by that key redeems the code."""

    grant = models.OneToOneField(
        oauth2_settings.GRANT_MODEL,
        on_delete=models.CASCADE,
        related_name="delegation_dpop_binding",
        editable=False,
    )
    jkt = models.CharField(_("DPoP key thumbprint"), max_length=64, editable=False)

    class Meta:
        verbose_name = _("authorization code binding")

    def __str__(self) -> str:
        return self.jkt


class RefreshTokenBinding(models.Model):
    """The DPoP key a public client's refresh token is bound to (RFC 9449 section 5): only a
    proof by that key redeems it. A confidential client's refresh tokens are not bound; its
    client authentication guards them."""

    refresh_token = models.OneToOneField(
        oauth2_settings.REFRESH_TOKEN_MODEL,
        on_delete=models.CASCADE,
        related_name="delegation_dpop_binding",
        editable=False,
    )
    jkt = models.CharField(_("DPoP key thumbprint"), max_length=64, editable=False)

    class Meta:
        verbose_name = _("refresh token binding")

    def __str__(self) -> str:
        return self.jkt


class StatusList(models.Model):
    """One Token Status List (draft-ietf-oauth-status-list section 4): the statuses of up to
    ``size`` tokens, published signed at its URI.

    ``number`` is the first allocation block (:class:`StatusListBlock`) it serves; the blocks
    after it, up to ``size`` positions, belong to it. ``slug`` (the last segment of its URI)
    and the permutation key that turns positions into indices are random. A token's bit is
    its lineage row's revocation (``TokenLineage.status_list``/``status_idx``): revoking marks
    the rows and increments ``version`` in one transaction; publishing signs the list
    anew whenever ``version`` passed ``signed_version``, so a crash between the two leaves the
    list unpublished, never lost. ``retired_at`` is set once all its tokens expired.
    """

    number = models.BigIntegerField(primary_key=True)
    slug = models.CharField(max_length=64, unique=True)
    size = models.PositiveIntegerField()
    # positions per reserved block, fixed for the list's life (a changed setting applies to new lists)
    block_size = models.PositiveIntegerField(default=256)
    bits = models.PositiveSmallIntegerField(default=1)
    permutation_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    version = models.BigIntegerField(default=0)
    signed_version = models.BigIntegerField(default=-1)
    token = models.TextField(blank=True, editable=False)
    etag = models.CharField(max_length=80, blank=True, editable=False)
    signed_at = models.DateTimeField(null=True, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("status list")
        ordering = ["number"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_dirty(self) -> bool:
        return self.version != self.signed_version


class StatusListBlock(models.Model):
    """A reservation of positions for status lists: inserting a row reserves the block whose
    number is its id (less one). The id comes from the database's sequence, which never
    hands one out twice, even when the inserting transaction rolls back (PostgreSQL), so two
    processes never share a block. Old rows carry no information and are swept."""

    id = models.BigAutoField(primary_key=True)
    reserved_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("status list block")

    def __str__(self) -> str:
        return str(self.pk)


class TokenLineage(models.Model):
    """One issued access token and where it came from.

    ``path`` lists the ``jti`` of every ancestor and of the token itself, joined
    by ``/``, so a whole subtree is one indexed prefix match. ``parties`` holds
    ``|uri|`` for the requesting client, every audience and every actor, so
    disabling a party finds its live tokens in one query on any database.
    Revocation marks rows; they are kept for audit until the retention sweep.
    """

    # Every index of this table is written on every issuance, so each one serves a look-up,
    # and the text columns' are declared in Meta.indexes: ``db_index=True`` on a CharField
    # would add a second, LIKE-only index on PostgreSQL, and a plain index on a column that is
    # NULL on almost every row (revocation, the authorization code, the approval) costs a page
    # on every insert where a partial one costs nothing.
    jti = models.CharField(max_length=64)
    parent_jti = models.CharField(max_length=64, blank=True)  # read with its row, never searched
    root_jti = models.CharField(max_length=64)
    path = models.CharField(max_length=1100)
    depth = models.PositiveSmallIntegerField(default=0)
    grant_type = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    subject = models.CharField(max_length=255)
    client_id = models.CharField(max_length=255)
    audience = models.JSONField(default=list)
    scope = models.TextField(blank=True)
    act = models.JSONField(null=True, blank=True)
    parties = models.TextField(blank=True)
    kid = models.CharField(max_length=128)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    access_token = models.OneToOneField(
        oauth2_settings.ACCESS_TOKEN_MODEL,
        # DO_NOTHING: the post_delete handler must still find the row to cascade.
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="delegation_lineage",
        db_constraint=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=64, blank=True)
    # SHA-256 (hex) of the authorization code this token was issued for, never the code:
    # a replay of the code finds and revokes it (RFC 6749 section 10.5). Kept as long as
    # the row (LINEAGE_RETENTION_SECONDS after expiry), swept with it.
    code_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)
    # RFC 7638 thumbprint of the DPoP key the token is bound to (its cnf.jkt, RFC 9449
    # section 6.1): the key of the client that requested it. Empty for a bearer token.
    jkt = models.CharField(_("DPoP key thumbprint"), max_length=64, blank=True, default="")
    # Where the token's status is published (its `status.status_list` claim): the list and
    # the index. Unique together, so no two stored tokens ever share an entry.
    status_list = models.ForeignKey(
        StatusList,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        # The unique (status_list, status_idx) index below leads with it: a second index
        # would only cost a page every insert.
        db_index=False,
    )
    status_idx = models.PositiveIntegerField(null=True, blank=True)
    # The user's approval the token was issued on (OpenID CIBA), and through it who gave it.
    approval = models.ForeignKey(
        "ApprovalRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,  # the partial index below
    )

    class Meta:
        verbose_name = _("token lineage record")
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(fields=["jti"], name="delegation_idp_lineage_jti"),
            models.UniqueConstraint(
                fields=["status_list", "status_idx"],
                condition=Q(status_list__isnull=False),
                name="delegation_idp_lineage_status_entry",
            ),
        ]
        indexes = [
            # A tree (the admin's view) and its subtrees (revocation: ``path`` equal to, or
            # starting with, an ancestor's). On PostgreSQL the pattern operator class serves
            # both the prefix match and equality, so ``path`` needs no second index.
            models.Index(fields=["root_jti"], name="delegation_idp_lineage_root"),
            models.Index(
                fields=["path"], name="delegation_idp_lineage_path", opclasses=["varchar_pattern_ops"]
            ),
            # Revoking a client's, a key's tokens (exact matches only).
            models.Index(fields=["client_id"], name="delegation_idp_lineage_client"),
            models.Index(fields=["kid"], name="delegation_idp_lineage_kid"),
            # NULL on nearly every row: only the rows that have one are indexed.
            models.Index(
                fields=["revoked_at"],
                condition=Q(revoked_at__isnull=False),
                name="delegation_idp_lineage_revk",
            ),
            models.Index(
                fields=["code_hash"],
                condition=Q(code_hash__isnull=False),
                name="delegation_idp_lineage_code",
            ),
            models.Index(
                fields=["approval"],
                condition=Q(approval__isnull=False),
                name="delegation_idp_lineage_appr",
            ),
        ]

    def __str__(self) -> str:
        return self.jti

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def chain(self) -> tuple[str, ...]:
        return chain_from_act(self.act, max_depth=64) if self.act else ()


def validate_algorithms(value: str) -> None:
    """Space-separated asymmetric JWS algorithms this package verifies (RFC 8725 section 3.1)."""
    algorithms = value.split()
    if not algorithms or not set(algorithms) <= ASYMMETRIC_ALGORITHMS:
        raise ValidationError(
            _("Use asymmetric algorithms only, among: %(algs)s."),
            params={"algs": " ".join(sorted(ASYMMETRIC_ALGORITHMS))},
            code="invalid",
        )


class TrustedIssuer(models.Model):
    """An external identity provider whose ID-JAGs this provider redeems with the RFC 7523
    ``jwt-bearer`` grant (draft-ietf-oauth-identity-assertion-authz-grant section 5), as an
    admin registered it: its keys, its algorithms, the clients that may redeem its grants, and
    how its ``sub`` becomes a local user."""

    BY_CLAIM = "claim"
    JUST_IN_TIME = "jit"
    USER_MAPPING_CHOICES = [
        (BY_CLAIM, _("an existing user whose field equals the claim")),
        (JUST_IN_TIME, _("a user created just in time, linked to the issuer and sub")),
    ]

    issuer = models.CharField(
        _("issuer"),
        max_length=255,
        unique=True,
        validators=[validate_identity_uri],
        help_text=_("The exact iss of its ID-JAGs."),
    )
    name = models.CharField(_("display name"), max_length=200)
    jwks_uri = models.CharField(
        _("JWKS URI"),
        max_length=255,
        validators=[validate_identity_uri],
        help_text=_("Its public keys (https; fetched without redirects, cached, size- and time-limited)."),
    )
    algorithms = models.CharField(
        _("allowed algorithms"),
        max_length=100,
        default="ES256 RS256 EdDSA",
        validators=[validate_algorithms],
        help_text=_("Space-separated; asymmetric only."),
    )
    clients = models.ManyToManyField(
        oauth2_settings.APPLICATION_MODEL,
        verbose_name=_("clients that may redeem its ID-JAGs"),
        related_name="delegation_trusted_issuers",
        blank=True,
    )
    services = models.ManyToManyField(
        Party,
        verbose_name=_("services its ID-JAGs may reach"),
        related_name="trusted_id_jag_issuers",
        blank=True,
        help_text=_(
            "The access tokens its ID-JAGs yield are addressed only to resources of these parties; "
            "none chosen: its ID-JAGs reach nothing."
        ),
    )
    user_mapping = models.CharField(
        _("local user"),
        max_length=10,
        choices=USER_MAPPING_CHOICES,
        default=JUST_IN_TIME,  # never an existing account unless an admin says so
    )
    subject_claim = models.CharField(
        _("claim"),
        max_length=64,
        default="sub",
        help_text=_("For an existing user: the ID-JAG claim to match (e.g. sub or email)."),
    )
    user_field = models.CharField(
        _("user field"),
        max_length=64,
        blank=True,
        help_text=_(
            "For an existing user: the user model's field it must equal (blank: the username field)."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("trusted ID-JAG issuer")
        verbose_name_plural = _("trusted ID-JAG issuers")
        ordering = ["issuer"]

    def __str__(self) -> str:
        return f"{self.name} <{self.issuer}>"

    def clean(self) -> None:
        if self.user_field:
            try:
                field = get_user_model()._meta.get_field(self.user_field)
            except FieldDoesNotExist as exc:
                raise ValidationError({"user_field": _("The user model has no such field.")}) from exc
            if not getattr(field, "unique", False):
                # e.g. Django's email: two accounts may share it, and one may be self-registered.
                raise ValidationError({"user_field": _("Users are matched by a unique field only.")})

    def algorithm_list(self) -> list[str]:
        return self.algorithms.split()


class ExternalIdentity(models.Model):
    """A local user created just in time for a trusted issuer's ``sub``: the pair (issuer, sub)
    finds it again, and nothing else does (never a username or email the other side chose)."""

    issuer = models.ForeignKey(TrustedIssuer, on_delete=models.CASCADE, related_name="identities")
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("external identity")
        verbose_name_plural = _("external identities")
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="delegation_idp_external_identity_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.issuer.issuer} {self.subject}"


class ClientAssertionJti(models.Model):
    """A spent ``jti`` of a private_key_jwt client assertion (RFC 7523 section 3, item 7).

    The unique constraint makes a replayed assertion fail in every process;
    rows are purged once the assertion has expired.
    """

    client_id = models.CharField(max_length=255)
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("spent client assertion")
        constraints = [
            models.UniqueConstraint(fields=["client_id", "jti"], name="delegation_idp_assertion_once")
        ]

    def __str__(self) -> str:
        return f"{self.client_id} {self.jti}"


class AuditEvent(models.Model):
    """An append-only record of one token-endpoint attempt or revocation."""

    GRANTED = "granted"
    DENIED = "denied"
    REVOKED = "revoked"

    created = models.DateTimeField(default=timezone.now, db_index=True)
    # Not indexed: a handful of values each, so an index would not narrow a search worth the
    # page it costs every insert (lists filter them beside the indexed ``created``).
    event = models.CharField(max_length=32)
    decision = models.CharField(max_length=16)
    reason = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=64, blank=True)
    grant_type = models.CharField(max_length=128, blank=True)
    # Searched by exact value only (Meta.indexes: one index each, no LIKE-only twin on
    # PostgreSQL).
    client_id = models.CharField(max_length=255, blank=True)
    user_id = models.CharField(max_length=64, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    chain = models.JSONField(default=list)
    requested_audience = models.JSONField(default=list)
    requested_scope = models.TextField(blank=True)
    granted_audience = models.JSONField(default=list)
    granted_scope = models.TextField(blank=True)
    jti = models.CharField(max_length=64, blank=True)
    parent_jti = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # The thumbprint of the DPoP key the request proved (RFC 9449), whatever the outcome.
    jkt = models.CharField(max_length=64, blank=True, default="")
    # The user who approved the delegation (OpenID CIBA), or who decided an approval request.
    approved_by = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        verbose_name = _("audit event")
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["client_id"], name="delegation_idp_audit_client"),
            models.Index(fields=["user_id"], name="delegation_idp_audit_user"),
            models.Index(fields=["subject"], name="delegation_idp_audit_subject"),
            models.Index(fields=["jti"], name="delegation_idp_audit_jti"),
        ]

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.event} {self.decision}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("Audit events are append-only.")
        super().save(*args, **kwargs)


class ApprovalRequest(models.Model):
    """A delegation waiting for its user's approval: one OpenID CIBA backchannel
    authentication request (poll mode), from the agent's request to the token it got.

    Only the SHA-256 of the ``auth_req_id`` is stored; the page addresses a request by its
    own ``id``, which is never an ``auth_req_id``. The allowed exchange is kept as it was
    decided (audiences, scope, chain, ``authorization_details``), and the subject token's
    claims without its signature, so the poll re-checks lineage and policy before it issues.
    A pending request past ``expires_at`` is expired, whatever its stored status.
    """

    PENDING, APPROVED, DENIED, CANCELLED, ISSUED = "pending", "approved", "denied", "cancelled", "issued"
    STATUS_CHOICES = [
        (PENDING, _("waiting for the user")),
        (APPROVED, _("approved")),
        (DENIED, _("denied")),
        (CANCELLED, _("cancelled")),
        (ISSUED, _("token issued")),
    ]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    auth_req_id_hash = models.CharField(max_length=64, unique=True, editable=False)
    client_id = models.CharField(max_length=255, db_index=True)
    requester = models.CharField(_("requesting party"), max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    subject_jti = models.CharField(max_length=64, db_index=True)
    subject_claims = models.JSONField(default=dict)
    chain = models.JSONField(default=list)
    audience = models.JSONField(default=list)
    resources = models.JSONField(default=list)
    scope = models.TextField(blank=True)
    authorization_details = models.JSONField(default=list, blank=True)
    binding_message = models.CharField(max_length=255, blank=True)
    requested_token_type = models.CharField(max_length=128)
    # core.approval.request_fingerprint: what the user approves, for the reuse of an approval
    fingerprint = models.CharField(max_length=64, db_index=True, editable=False)
    jkt = models.CharField(_("DPoP key thumbprint"), max_length=64, blank=True, default="")
    rule_id = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(db_index=True)
    interval = models.PositiveIntegerField(default=5)
    polled_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    #: how long, once approved, the approval also answers identical requests (the rule's)
    reuse_seconds = models.PositiveIntegerField(default=0)
    reuse_until = models.DateTimeField(null=True, blank=True)
    reused_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    issued_jti = models.CharField(max_length=64, blank=True)
    cancel_reason = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name = _("approval request")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status"], name="delegation_idp_approval_user")]

    def __str__(self) -> str:
        return f"{self.requester} → {', '.join(self.audience)} ({self.status})"

    def expired(self, now: Any = None) -> bool:
        return self.status == self.PENDING and (now or timezone.now()) >= self.expires_at

    @property
    def state(self) -> str:
        """The status as the user sees it: a pending request past its time is expired."""
        return "expired" if self.expired() else self.status
