"""Django admin for the audit trail (read-only), in the lineage admin's conventions
(``delegation_idp.admin.lineage``): agents by party name and URI, the decision as a word and
symbol with its reason code, filters by decision, reason code (the catalogue's), agent, event,
user and date, search by an agent's name or URI; an event's page names its chain and audiences.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.display import party_chain, status
from delegation_idp.admin.lineage_columns import (
    AgentFilter,
    DecisionFilter,
    PartySearch,
    ReadOnlyAdmin,
    ReasonFilter,
    UserFilter,
    code,
    compact_time,
    decision_status,
    page_names,
    party_cell,
    short_jti,
    strings,
    subject_cell,
    with_party,
)
from delegation_idp.core.reasons import Reason
from delegation_idp.models import AuditEvent, TokenLineage

__all__ = ["AuditEventAdmin"]

_REASONS: dict[str, Reason] = {r.value: r for r in Reason}


@admin.register(AuditEvent)
class AuditEventAdmin(PartySearch, ReadOnlyAdmin):
    list_display = ("when", "decision_badge", "agent", "user_subject", "token")
    list_display_links = ("when",)
    list_filter = (
        DecisionFilter,
        ReasonFilter,
        AgentFilter,
        "event",
        UserFilter,
        ("created", admin.DateFieldListFilter),
    )
    search_fields = ("=client_id", "subject", "=jti", "=parent_jti", "=user_id", "reason")
    search_help_text = _("An agent's name or URI, a subject, a reason code, or a whole jti.")
    date_hierarchy = "created"
    fieldsets = (
        (_("Decision"), {"fields": ("created", "event", "decision_word", "reason_explained", "grant_type")}),
        (_("Who"), {"fields": ("agent", "acted_for", "subject", "chain_names", "client_ip", "jkt")}),
        (
            _("Asked and granted"),
            {
                "fields": (
                    "requested_audience_names",
                    "requested_scope",
                    "granted_audience_names",
                    "granted_scope",
                )
            },
        ),
        (_("Token"), {"fields": ("token_link", "parent_jti")}),
    )
    readonly_fields = (
        "decision_word",
        "reason_explained",
        "agent",
        "acted_for",
        "chain_names",
        "requested_audience_names",
        "granted_audience_names",
        "token_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return with_party(super().get_queryset(request))

    @admin.display(description=_("user"), ordering="subject")
    def user_subject(self, obj: AuditEvent) -> SafeString:
        return subject_cell(obj.subject)

    @admin.display(description=_("time, event"), ordering="created")
    def when(self, obj: AuditEvent) -> SafeString:
        return format_html(
            '{}<br><span class="idp-quiet">{}</span>', compact_time(obj.created), code(obj.event)
        )

    @admin.display(description=_("decision, reason"), ordering="decision")
    def decision_badge(self, obj: AuditEvent) -> SafeString:
        badge = status(decision_status(obj.decision))
        if not obj.reason or obj.reason == Reason.ALLOWED.value:
            return badge
        reason = _REASONS.get(obj.reason)
        description = reason.description if reason is not None else ""
        error = format_html('<br><span class="idp-quiet">{}</span>', code(obj.error)) if obj.error else ""
        return format_html("{}<br>{}{}", badge, code(obj.reason, description), error)

    @admin.display(description=_("reason"))
    def reason_explained(self, obj: AuditEvent) -> SafeString:
        reason = _REASONS.get(obj.reason)
        if reason is None:
            return format_html("{}", obj.reason or "-")
        if reason is Reason.ALLOWED:
            return format_html('<span class="idp-mono">{}</span> — {}', reason.value, reason.description)
        return format_html(
            '<span class="idp-mono">{}</span> — {}<br><span class="idp-quiet">{} {} · HTTP {}</span>',
            reason.value,
            reason.description,
            _("OAuth error"),
            obj.error or reason.error or "-",
            reason.status,
        )

    @admin.display(description=_("agent"), ordering="party_name")
    def agent(self, obj: AuditEvent) -> SafeString:
        return party_cell(obj)

    @admin.display(description=_("user"))
    def acted_for(self, obj: AuditEvent) -> SafeString:
        if not obj.user_id:
            return format_html("{}", "-")
        user = get_user_model().objects.filter(pk=obj.user_id).first() if obj.user_id.isdigit() else None
        if user is None:
            return format_html('<span class="idp-mono">{}</span>', obj.user_id)
        url = reverse("admin:delegation_idp_tokenlineage_acted", args=[user.pk])
        return format_html(
            '{} · <a href="{}">{}</a>', user.get_username(), url, _("who has acted on this user's behalf")
        )

    def _uris(self, obj: AuditEvent) -> list[Any]:
        return [*(obj.chain or []), *(obj.requested_audience or []), *(obj.granted_audience or [])]

    @admin.display(description=_("actors (newest first)"))
    def chain_names(self, obj: AuditEvent) -> SafeString:
        return party_chain(page_names(obj, self._uris(obj)), strings(obj.chain), compact=False)

    @admin.display(description=_("requested audience"))
    def requested_audience_names(self, obj: AuditEvent) -> SafeString:
        return party_chain(page_names(obj, self._uris(obj)), strings(obj.requested_audience), compact=False)

    @admin.display(description=_("granted audience"))
    def granted_audience_names(self, obj: AuditEvent) -> SafeString:
        return party_chain(page_names(obj, self._uris(obj)), strings(obj.granted_audience), compact=False)

    @admin.display(description=_("token"), ordering="jti")
    def token(self, obj: AuditEvent) -> SafeString:
        return short_jti(obj.jti)

    @admin.display(description=_("decision"))
    def decision_word(self, obj: AuditEvent) -> SafeString:
        return status(decision_status(obj.decision))

    @admin.display(description=_("jti"))
    def token_link(self, obj: AuditEvent) -> SafeString:
        if not obj.jti:
            return format_html("{}", "-")
        pk = TokenLineage.objects.filter(jti=obj.jti).values_list("pk", flat=True).first()
        code = format_html('<span class="idp-mono">{}</span>', obj.jti)
        if pk is None:
            return code
        url = reverse("admin:delegation_idp_tokenlineage_tree", args=[pk])
        return format_html('{} · <a href="{}">{}</a>', code, url, _("its lineage tree"))
