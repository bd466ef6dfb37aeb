"""Django admin for the signing key set: read-only keys, rotation, emergency revocation."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from delegation_idp.models import SigningKey
from delegation_idp.provider import rotation


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Keys are made by rotation only; the private key is never shown."""

    list_display = (
        "kid",
        "alg",
        "state",
        "created",
        "activates_at",
        "retired_at",
        "remove_after",
        "revoked_at",
    )
    list_filter = ("state", "alg")
    search_fields = ("kid",)
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
    actions = ["rotate", "revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False  # deleting a published key would break its tokens: revoke or let it retire

    @admin.action(description=_("Rotate keys now (publish a new next key)"), permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        result = rotation.rotate_keys(force=True)
        if result.created:
            message = _("Published a new next key %(kid)s; it starts signing one JWKS cache lifetime later.")
            self.message_user(request, message % {"kid": result.created}, messages.SUCCESS)
        else:
            self.message_user(
                request,
                _("A next key is already published; it takes over when its time comes."),
                messages.INFO,
            )

    @admin.action(description=_("Emergency: revoke selected keys as compromised"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> TemplateResponse | None:
        targets = list(queryset.exclude(state=SigningKey.REVOKED).order_by("kid"))
        if not targets:
            self.message_user(request, _("The selected keys are already revoked."), messages.WARNING)
            return None
        if request.POST.get("post") == "yes":
            total = 0
            for key in targets:
                total += rotation.revoke_key(key.kid).tokens_revoked
            self.message_user(
                request,
                ngettext(
                    "Revoked %(count)d key and %(tokens)d tokens.",
                    "Revoked %(count)d keys and %(tokens)d tokens.",
                    len(targets),
                )
                % {"count": len(targets), "tokens": total},
                messages.WARNING,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revoke signing keys?"),
            "opts": self.model._meta,
            "keys": [{"key": key, "live": rotation.live_tokens_signed_by(key.kid)} for key in targets],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/delegation_idp/signingkey/revoke_confirmation.html", context)
