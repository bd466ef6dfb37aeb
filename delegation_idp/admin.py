"""Django admin for registered parties, delegation rules, signing keys, lineage and audit."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from . import keys
from .models import AuditEvent, DelegationRule, Party, SigningKey, TokenLineage


class DelegationRuleInline(admin.StackedInline):
    model = DelegationRule
    fk_name = "actor"
    extra = 0
    filter_horizontal = ("audiences", "upstream_actors", "groups")
    raw_id_fields = ("users",)


@admin.register(Party)
class PartyAdmin(admin.ModelAdmin):
    list_display = ("name", "uri", "kind", "enabled", "application")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "uri", "contact", "application__client_id")
    list_select_related = ("application",)
    raw_id_fields = ("application",)
    inlines = [DelegationRuleInline]
    actions = ["enable", "disable"]

    @admin.action(description=_("Enable selected parties"))
    def enable(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        for party in queryset:
            party.enabled = True
            party.save()
        self.message_user(request, _("Enabled."), messages.SUCCESS)

    @admin.action(description=_("Disable selected parties (revokes their live tokens)"))
    def disable(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        for party in queryset:
            party.enabled = False
            party.save()
        self.message_user(request, _("Disabled; their live tokens are revoked."), messages.SUCCESS)


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ("kid", "alg", "state", "created", "activates_at", "retired_at", "remove_after")
    list_filter = ("state", "alg")
    readonly_fields = (
        "kid",
        "alg",
        "state",
        "public_jwk",
        "created",
        "activates_at",
        "retired_at",
        "remove_after",
        "revoked_at",
    )
    exclude = ("private_key",)
    actions = ["rotate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=_("Rotate keys now (publish a new next key)"))
    def rotate(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        result = keys.rotate_keys(force=True)
        self.message_user(
            request,
            _("Rotation: created %(c)s, promoted %(p)s.")
            % {"c": result.created or "-", "p": result.promoted or "-"},
            messages.SUCCESS,
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TokenLineage)
class TokenLineageAdmin(ReadOnlyAdmin):
    list_display = ("jti", "subject", "client_id", "depth", "issued_at", "expires_at", "revoked_at")
    list_filter = ("grant_type", "depth", "revocation_reason")
    search_fields = ("jti", "root_jti", "subject", "client_id")
    date_hierarchy = "issued_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created", "event", "decision", "reason", "error", "client_id", "subject", "jti")
    list_filter = ("decision", "event", "reason")
    search_fields = ("client_id", "subject", "jti", "parent_jti", "user_id")
    date_hierarchy = "created"
