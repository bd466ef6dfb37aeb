"""Django admin for token lineage and the audit trail, both read-only, read at a glance: every
agent by its party's name and URI, linked; a status column (word, symbol and colour); filters by
agent, status, reason and date; search by an agent's name or URI and by ``jti``; columns that fit
1280 px.

Each lineage record links to its tree (from the user's root token down, siblings in the order they
were issued, a revoked branch struck through), where "revoke subtree" leads to a confirmation
page, and to "who has acted on this user's behalf". The columns and filters are in
``lineage_columns``, the pages' nodes in ``lineage_tree``, the audit trail's admin in
``lineage_audit`` (imported here, so it is registered with this module). A token issued on the
user's approval (OpenID CIBA) says who approved it and when, linked to the approval request.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin import lineage_tree
from delegation_idp.admin.approvals import approver_line
from delegation_idp.admin.display import MEDIA, PartyNames, party_chain, status
from delegation_idp.admin.lineage_audit import AuditEventAdmin
from delegation_idp.admin.lineage_columns import (
    AgentFilter,
    LineageStatusFilter,
    PartySearch,
    ReadOnlyAdmin,
    RevocationReasonFilter,
    compact_time,
    lineage_status,
    page_names,
    party_cell,
    short_jti,
    strings,
    subject_cell,
    with_party,
)
from delegation_idp.lineage import queries, revocation
from delegation_idp.models import ApprovalRequest, AuditEvent, TokenLineage

__all__ = ["AuditEventAdmin", "TokenLineageAdmin"]


@admin.register(TokenLineage)
class TokenLineageAdmin(PartySearch, ReadOnlyAdmin):
    list_display = ("token", "agent", "user_subject", "status_column", "issued")
    list_display_links = None
    list_filter = (
        AgentFilter,
        LineageStatusFilter,
        RevocationReasonFilter,
        ("issued_at", admin.DateFieldListFilter),
        "grant_type",
        "depth",
    )
    search_fields = ("=jti", "=root_jti", "subject", "client_id")
    search_help_text = _("An agent's name or URI, a user, or a whole jti.")
    date_hierarchy = "issued_at"
    readonly_fields = ("agent", "status_column", "approved", "tree_link", "acted_link")
    # The approval request shows as "approved by <user> at <time>" (approved), linked to it.
    exclude = ("approval",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TokenLineage]:
        queryset = with_party(super().get_queryset(request))
        return queryset.annotate(status_value=lineage_status(timezone.now()))

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        """The page's audiences named with one query; the names travel on the page's rows."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        names = PartyNames(uris={u for r in rows for u in r.audience if isinstance(u, str)})
        for row in rows:
            row._idp_names = names
        return changelist

    @admin.display(description=_("token"), ordering="jti")
    def token(self, obj: TokenLineage) -> SafeString:
        """The jti (shortened) linked to its record, its depth and grant, and its tree."""
        record = reverse("admin:delegation_idp_tokenlineage_change", args=[obj.pk])
        tree = reverse("admin:delegation_idp_tokenlineage_tree", args=[obj.pk])
        return format_html(
            '<a href="{}">{}</a><br><span class="idp-quiet" title="{}">{} {} · {}</span>'
            '<br><a class="idp-tree-link" href="{}">{}</a>',
            record,
            short_jti(obj.jti),
            obj.grant_type,
            _("depth"),
            obj.depth,
            GRANTS.get(obj.grant_type, obj.grant_type.rsplit(":", 1)[-1]),
            tree,
            _("tree"),
        )

    @admin.display(description=_("agent → audience"), ordering="party_name")
    def agent(self, obj: TokenLineage) -> SafeString:
        return format_html(
            '{}<div class="idp-audience">→ {}</div>',
            party_cell(obj),
            party_chain(page_names(obj, obj.audience), strings(obj.audience), sep=", "),
        )

    @admin.display(description=_("user"), ordering="subject")
    def user_subject(self, obj: TokenLineage) -> SafeString:
        return subject_cell(obj.subject)

    @admin.display(description=_("status"), ordering="status_value")
    def status_column(self, obj: TokenLineage) -> SafeString:
        value = getattr(obj, "status_value", None) or lineage_tree.row_status(obj, timezone.now())
        if value != "revoked":
            return status(value)
        return format_html(
            '{}<br><span class="idp-quiet" title="{}">{}</span>',
            status(value),
            obj.revoked_at.isoformat() if obj.revoked_at else "",
            obj.revocation_reason or "-",
        )

    @admin.display(description=_("issued → expires"), ordering="issued_at")
    def issued(self, obj: TokenLineage) -> SafeString:
        return format_html(
            '{}<br><span class="idp-quiet">→ {}</span>',
            compact_time(obj.issued_at),
            compact_time(obj.expires_at, since=obj.issued_at),
        )

    @admin.display(description=_("user's approval"))
    def approved(self, obj: TokenLineage) -> SafeString:
        """Who approved the delegation it was issued on (OpenID CIBA), linked to the request."""
        if obj.approval_id is None:
            return format_html("{}", "-")
        approval = ApprovalRequest.objects.select_related("decided_by").filter(pk=obj.approval_id).first()
        return approver_line(approval)

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

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "media": MEDIA, **extra}

    def tree_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The whole tree the token belongs to, from the user's root token down."""
        row = self._row(request, pk)
        roots = lineage_tree.build_tree(queries.tree(row.jti), now=timezone.now(), selected=row)
        nodes = lineage_tree.flatten(roots)
        counts = {s: sum(1 for n in nodes if n.status == s) for s in ("active", "expired", "revoked")}
        context = self._context(
            request,
            title=_("Token lineage"),
            selected=row,
            roots=roots,
            nodes=nodes,
            counts=counts,
            can_revoke=self.has_revoke_permission(request),
        )
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
        roots = lineage_tree.build_tree(list(queries.subtree(row.jti)), now=timezone.now(), selected=row)
        affected = lineage_tree.flatten(roots)
        context = self._context(
            request,
            title=_("Revoke this subtree?"),
            selected=row,
            roots=roots,
            affected=affected,
            live=sum(1 for a in affected if a.status == "active"),
            can_revoke=False,
        )
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
        denied = list(
            AuditEvent.objects.filter(user_id=str(user.pk), decision=AuditEvent.DENIED).order_by(
                "-created", "-id"
            )[:50]
        )
        acted = queries.acted_for_user(user.pk)
        acted_rows, denied_rows = lineage_tree.acted_rows(acted, denied)
        context = self._context(
            request,
            title=_("Who has acted on behalf of %(user)s") % {"user": user.get_username()},
            subject_user=user,
            acted=acted,
            denied=denied,
            acted_rows=acted_rows,
            denied_rows=denied_rows,
        )
        return TemplateResponse(request, "admin/delegation_idp/tokenlineage/acted.html", context)


#: short names of the grant types in the token column (the whole one in its title)
GRANTS = {
    "urn:ietf:params:oauth:grant-type:token-exchange": "exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer": "jwt-bearer",
    "authorization_code": "code",
    "client_credentials": "client",
    "refresh_token": "refresh",
}
