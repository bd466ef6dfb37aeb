"""Admin for the trusted ID-JAG issuers (draft-ietf-oauth-identity-assertion-authz-grant,
redeemed with the RFC 7523 ``jwt-bearer`` grant) and the users created just in time for them.
External authorization servers that this provider issues ID-JAGs *for* are registered
parties (:mod:`delegation_idp.admin.parties`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from delegation_idp.models import ExternalIdentity, TrustedIssuer


@admin.register(TrustedIssuer)
class TrustedIssuerAdmin(admin.ModelAdmin):
    """An external identity provider whose ID-JAGs the clients it lists may redeem here."""

    list_display = ("name", "issuer", "algorithms", "user_mapping", "enabled", "updated")
    list_filter = ("enabled", "user_mapping")
    search_fields = ("name", "issuer", "jwks_uri")
    filter_horizontal = ("clients", "services")
    readonly_fields = ("created", "updated")
    fieldsets = (
        (None, {"fields": ("issuer", "name", "enabled")}),
        (_("Keys"), {"fields": ("jwks_uri", "algorithms")}),
        (_("Who may redeem, for what"), {"fields": ("clients", "services")}),
        (_("Local user"), {"fields": ("user_mapping", "subject_claim", "user_field")}),
        (None, {"fields": ("created", "updated")}),
    )


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    """Read-only: a link is made by the first redemption, and removed with its user or issuer."""

    list_display = ("subject", "issuer", "user", "created")
    list_filter = ("issuer",)
    search_fields = ("subject",)
    list_select_related = ("issuer", "user")
    raw_id_fields = ("user",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
