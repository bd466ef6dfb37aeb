"""Django admin for the signing key set."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import keys
from ..models import SigningKey


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
