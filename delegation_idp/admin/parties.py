"""Django admin for registered parties and their delegation rules."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import DelegationRule, Party


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
