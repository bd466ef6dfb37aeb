"""Django admin for token lineage and the audit trail.

Both lists are read-only. Each lineage record links to its tree (from the
user's root token down, each node with its status) with "revoke this
subtree" behind a confirmation page, and to "who has acted on this user's
behalf".
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from delegation_idp.lineage import queries, revocation
from delegation_idp.models import AuditEvent, Party, TokenLineage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _status(row: TokenLineage, now: Any) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "active" if row.expires_at > now else "expired"


@admin.register(TokenLineage)
class TokenLineageAdmin(ReadOnlyAdmin):
    list_display = (
        "jti",
        "subject",
        "client_id",
        "depth",
        "issued_at",
        "expires_at",
        "revoked_at",
        "revocation_reason",
        "jkt",
        "tree_link",
    )
    list_filter = ("grant_type", "depth", "revocation_reason")
    search_fields = ("=jti", "=root_jti", "subject", "client_id")
    date_hierarchy = "issued_at"
    readonly_fields = ("tree_link", "acted_link")

    @admin.display(description=_("lineage"))
    def tree_link(self, obj: TokenLineage) -> str:
        url = reverse("admin:delegation_idp_tokenlineage_tree", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("tree"))

    @admin.display(description=_("acted for the user"))
    def acted_link(self, obj: TokenLineage) -> str:
        if obj.user_id is None:
            return "-"
        url = reverse("admin:delegation_idp_tokenlineage_acted", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, _("who has acted on this user's behalf"))

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/tree/", wrap(self.tree_view), name="delegation_idp_tokenlineage_tree"),
            path("<int:pk>/revoke/", wrap(self.revoke_view), name="delegation_idp_tokenlineage_revoke"),
            path(
                "user/<str:user_id>/acted/", wrap(self.acted_view), name="delegation_idp_tokenlineage_acted"
            ),
            *super().get_urls(),
        ]

    def _row(self, request: HttpRequest, pk: int) -> TokenLineage:
        if not self.has_view_permission(request):
            raise PermissionDenied
        row = TokenLineage.objects.filter(pk=pk).first()
        if row is None:
            raise Http404
        return row

    def tree_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The whole tree the token belongs to, from the user's root token down."""
        row = self._row(request, pk)
        now = timezone.now()
        nodes = [
            {"row": node, "status": _status(node, now), "indent": node.depth * 2, "chain": node.chain}
            for node in queries.tree(row.jti)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Token lineage"),
            "selected": row,
            "nodes": nodes,
            "can_revoke": self.has_revoke_permission(request),
        }
        return TemplateResponse(request, "admin/delegation_idp/tokenlineage/tree.html", context)

    def revoke_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET: what would be revoked; POST: revoke the token and its whole subtree."""
        row = self._row(request, pk)
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            revoked = revocation.revoke_subtree(row.jti, reason="admin")
            self.message_user(
                request,
                _("Revoked %(n)d tokens (the subtree of %(jti)s).") % {"n": len(revoked), "jti": row.jti},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:delegation_idp_tokenlineage_tree", args=[row.pk]))
        now = timezone.now()
        affected = [
            {"row": node, "status": _status(node, now), "indent": (node.depth - row.depth) * 2}
            for node in queries.subtree(row.jti)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Revoke this subtree?"),
            "selected": row,
            "affected": affected,
            "live": sum(1 for a in affected if a["status"] == "active"),
        }
        return TemplateResponse(request, "admin/delegation_idp/tokenlineage/revoke_confirm.html", context)

    def acted_view(self, request: HttpRequest, user_id: str) -> HttpResponse:
        """Who has acted on this user's behalf: every chain, and the refused attempts."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        User = get_user_model()
        try:
            user = User.objects.filter(pk=user_id).first()
        except (ValueError, TypeError):
            user = None
        if user is None:
            raise Http404
        denied = AuditEvent.objects.filter(user_id=str(user.pk), decision=AuditEvent.DENIED).order_by(
            "-created", "-id"
        )[:50]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Who has acted on behalf of %(user)s") % {"user": user.get_username()},
            "subject_user": user,
            "acted": queries.acted_for_user(user.pk),
            "denied": denied,
        }
        return TemplateResponse(request, "admin/delegation_idp/tokenlineage/acted.html", context)


class AgentFilter(admin.SimpleListFilter):
    """Events whose requesting client is this registered agent."""

    title = _("agent")
    parameter_name = "agent"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        parties = Party.objects.filter(application__isnull=False).select_related("application")
        return [(p.application.client_id, p.uri) for p in parties if p.application is not None]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(client_id=self.value()) if self.value() else queryset


class UserFilter(admin.SimpleListFilter):
    """Events about this user (their id, as recorded)."""

    title = _("user")
    parameter_name = "user"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = list(
            AuditEvent.objects.exclude(user_id="")
            .order_by()
            .values_list("user_id", flat=True)
            .distinct()[:100]
        )
        users = {str(u.pk): u.get_username() for u in get_user_model().objects.filter(pk__in=ids)}
        return [(i, users.get(i, i)) for i in sorted(ids)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(user_id=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "created",
        "event",
        "decision",
        "reason",
        "error",
        "client_id",
        "user_id",
        "subject",
        "jti",
        "client_ip",
        "jkt",
    )
    list_filter = ("decision", "event", AgentFilter, UserFilter, ("created", admin.DateFieldListFilter))
    search_fields = ("=client_id", "subject", "=jti", "=parent_jti", "=user_id", "reason")
    date_hierarchy = "created"
