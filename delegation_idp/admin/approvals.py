"""The user in the loop in the admin (OpenID CIBA): a rule's approval terms, checked and shown,
and the approval requests, read-only.

* :func:`approval_errors` checks a rule form's approval fields (used by
  :class:`delegation_idp.admin.rules.DelegationRuleForm`): "above" needs scopes or a depth, the
  scopes lie within the rule's largest scope, a request lives 10 s to 24 h, a reuse window is
  never negative;
* :func:`approval_terms` says in words when a rule's hop needs the user's approval, and
  :func:`approval_badge` shows it in lists and titles;
* :class:`ApprovalRequestAdmin` lists the approval requests: who asked whom for what, the
  status as the user sees it (a pending request past its time is "expired"), who decided, and
  the token it was issued on, linked to its lineage row. It never shows the ``auth_req_id``'s
  digest, and nothing can be added, changed or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.display import STATUSES, PartyNames, party_chain
from delegation_idp.admin.lineage_columns import (
    PartySearch,
    ReadOnlyAdmin,
    compact_time,
    page_names,
    party_cell,
    short_jti,
    strings,
    with_party,
)
from delegation_idp.models import ApprovalRequest, DelegationRule, TokenLineage

__all__ = [
    "APPROVAL_FIELDSET",
    "MAX_LIFETIME",
    "MIN_LIFETIME",
    "ApprovalFields",
    "ApprovalRequestAdmin",
    "approval_badge",
    "approval_errors",
    "approval_terms",
    "approver_line",
    "summary_words",
]

#: the shortest and longest time an approval request may wait for its user (seconds)
MIN_LIFETIME, MAX_LIFETIME = 10, 24 * 3600


_APPROVAL = DelegationRule._meta.get_field("approval")
_REUSE = DelegationRule._meta.get_field("approval_reuse_seconds")


class _Defaulted:
    """A field whose absence from the submitted data is its default, and no change: a form
    posted without the approval fields (an older script, an inline left blank) means "never"."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        return data not in (None, "") and super().has_changed(initial, data)  # type: ignore[misc]


class ApprovalModeField(_Defaulted, forms.TypedChoiceField):
    pass


class ReuseSecondsField(_Defaulted, forms.IntegerField):
    pass


#: the rule form's fieldset of the user's approval (the admin's page and the party's inline)
APPROVAL_FIELDSET: tuple[Any, Any] = (
    _("The user's approval (OpenID CIBA)"),
    {
        "fields": (
            "approval",
            ("approval_scopes", "approval_min_depth"),
            ("approval_lifetime", "approval_reuse_seconds"),
        ),
        "description": _(
            "A hop that needs approval is refused at the token endpoint (approval_required): the "
            "agent asks at the backchannel authentication endpoint, the user approves or denies on "
            "the approval page, and the agent polls for its token."
        ),
    },
)


class ApprovalFields(forms.ModelForm):
    """The approval fields of :class:`delegation_idp.admin.rules.DelegationRuleForm`, which
    defaults them when a form is posted without them."""

    approval = ApprovalModeField(
        label=capfirst(_APPROVAL.verbose_name),
        choices=DelegationRule.APPROVAL_CHOICES,
        required=False,
        empty_value=DelegationRule.APPROVAL_NEVER,
        initial=DelegationRule.APPROVAL_NEVER,
        help_text=_(
            "Never; always; or only for the scopes that need approval or from the depth below (either "
            "is enough)."
        ),
    )
    approval_reuse_seconds = ReuseSecondsField(
        label=capfirst(_REUSE.verbose_name),
        required=False,
        initial=0,
        help_text=_REUSE.help_text,
        widget=forms.NumberInput(attrs={"class": "vIntegerField", "min": 0}),
    )


def approval_errors(data: Mapping[str, Any]) -> dict[str, Any]:
    """The errors, by field, of a rule form's cleaned approval fields (empty: none)."""
    errors: dict[str, Any] = {}
    mode = data.get("approval") or DelegationRule.APPROVAL_NEVER
    scopes = set(str(data.get("approval_scopes") or "").split())
    depth = data.get("approval_min_depth")
    largest = set(str(data.get("max_scope") or "").split())
    if mode == DelegationRule.APPROVAL_ABOVE and not scopes and depth is None:
        errors["approval"] = _(
            "“For the scopes or from the depth below” needs scopes that need approval, a depth, or both."
        )
    if scopes and largest and not scopes <= largest:
        errors["approval_scopes"] = _("Not within the rule's largest scope: %(scopes)s.") % {
            "scopes": " ".join(sorted(scopes - largest))
        }
    max_depth = data.get("max_depth")
    if depth is not None and depth < 1:
        errors["approval_min_depth"] = _("Depth 1 is the first hop, directly for the user.")
    elif depth is not None and max_depth is not None and depth > max_depth:
        errors["approval_min_depth"] = _(
            "Deeper than the rule's largest chain depth (%(n)d): approval would never be asked."
        ) % {"n": max_depth}
    lifetime = data.get("approval_lifetime")
    if lifetime is not None and not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        errors["approval_lifetime"] = _("From %(low)d seconds to %(high)d (24 hours).") % {
            "low": MIN_LIFETIME,
            "high": MAX_LIFETIME,
        }
    reuse = data.get("approval_reuse_seconds")
    if reuse is not None and reuse < 0:
        errors["approval_reuse_seconds"] = _("0 (never reused) or more seconds.")
    return errors


def _when(always: bool, scopes: Any, min_depth: int | None) -> str:
    if always:
        return str(_("always"))
    parts = []
    if scopes:
        parts.append(str(_("for %(scopes)s") % {"scopes": " ".join(sorted(scopes))}))
    if min_depth is not None:
        parts.append(str(_("from depth %(n)d") % {"n": min_depth}))
    return str(_(" or ")).join(parts)


def approval_terms(rule: DelegationRule) -> str:
    """When a hop the rule allows needs the user's approval, and on which terms, in words;
    "" when never."""
    view = rule.approval_view()
    if view is None:
        return ""
    terms = [
        str(
            _("needs the user's approval %(when)s")
            % {"when": _when(view.always, view.scopes, view.min_depth)}
        )
    ]
    if view.lifetime is not None:
        terms.append(str(_("request lives %(n)d s") % {"n": view.lifetime}))
    if view.reuse_seconds:
        terms.append(str(_("reused for %(n)d s") % {"n": view.reuse_seconds}))
    return "; ".join(terms)


def summary_words(summary: Mapping[str, Any]) -> str:
    """A dry run's approval terms (:func:`delegation_idp.provider.dry_run.approval_summary`) in
    words, for the try page and ``manage.py explain``."""
    when = _when(summary["always"], summary["scopes"], summary["min_depth"])
    source = (
        _("the APPROVAL_REQUEST_LIFETIME setting") if summary["lifetime_from_setting"] else _("the rule's")
    )
    lifetime = _("the request waits %(n)d s for the user (%(source)s)") % {
        "n": summary["lifetime"],
        "source": source,
    }
    reuse = (
        _("an approval also answers identical requests for %(n)d s") % {"n": summary["reuse_seconds"]}
        if summary["reuse_seconds"]
        else _("an approval is never reused")
    )
    needs = _("needs the user's approval %(when)s") % {"when": when}
    return f"{needs}; {lifetime}; {reuse}"


def approval_badge(rule: DelegationRule) -> SafeString:
    """The rule's approval terms as a line of words ("-" when never needed)."""
    terms = approval_terms(rule)
    if not terms:
        return format_html("{}", "-")
    return format_html('<span class="idp-approval">{}</span>', terms)


def approver_line(approval: ApprovalRequest | None) -> SafeString:
    """ "approved by <user> at <time>", linked to the approval request; "-" without one."""
    if approval is None:
        return format_html("{}", "-")
    url = reverse("admin:delegation_idp_approvalrequest_change", args=[approval.pk])
    who = approval.decided_by.get_username() if approval.decided_by is not None else _("a deleted user")
    reused = approval.reused_from_id is not None
    return format_html(
        '<a href="{}">{}</a>{}',
        url,
        _("approved by %(user)s at %(time)s")
        % {"user": who, "time": timezone.localtime(approval.decided_at).strftime("%Y-%m-%d %H:%M:%S %Z")}
        if approval.decided_at is not None
        else _("approval request %(id)s") % {"id": approval.pk},
        format_html(' <span class="idp-quiet">({})</span>', _("an earlier identical approval, reused"))
        if reused
        else "",
    )


#: the badge of each status as the user sees it (ApprovalRequest.state)
STATE_BADGES = {
    ApprovalRequest.PENDING: "pending",
    ApprovalRequest.APPROVED: "allowed",
    ApprovalRequest.ISSUED: "allowed",
    ApprovalRequest.DENIED: "refused",
    ApprovalRequest.CANCELLED: "revoked",
    "expired": "expired",
}
STATE_WORDS = {**dict(ApprovalRequest.STATUS_CHOICES), "expired": _("expired")}


class ApprovalStateFilter(admin.SimpleListFilter):
    """The status as the user sees it: a pending request past its time is expired."""

    title = _("status")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [*ApprovalRequest.STATUS_CHOICES, ("expired", _("expired"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value, now = self.value(), timezone.now()
        if not value:
            return queryset
        if value == "expired":
            return queryset.filter(status=ApprovalRequest.PENDING, expires_at__lte=now)
        if value == ApprovalRequest.PENDING:
            return queryset.filter(status=value, expires_at__gt=now)
        return queryset.filter(status=value)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(PartySearch, ReadOnlyAdmin):
    list_display = ("created", "user_name", "agent", "scope_cell", "state_column", "decided", "token")
    list_display_links = ("created",)
    list_filter = (ApprovalStateFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("user__username", "user__email", "requester", "client_id")
    search_help_text = _("A user, or an agent's name or URI.")
    date_hierarchy = "created_at"
    list_select_related = ("user", "decided_by")
    # Never the auth_req_id's digest (it answers a poll), nor the subject token's claims.
    fields = (
        "created",
        "user_name",
        "agent",
        "chain_cell",
        "scope_cell",
        "resources",
        "authorization_details",
        "binding_message",
        "state_column",
        "expires_at",
        "decided",
        "reuse_cell",
        "token",
        "cancel_reason",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalRequest]:
        return with_party(super().get_queryset(request)).defer("auth_req_id_hash", "subject_claims")

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        """The page's parties and issued tokens found with one query each, kept on its rows."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        names = PartyNames(
            uris={u for r in rows for u in (r.requester, *strings(r.audience), *strings(r.chain))}
        )
        jtis = {r.issued_jti for r in rows if r.issued_jti}
        lineage = dict(TokenLineage.objects.filter(jti__in=jtis).values_list("jti", "pk")) if jtis else {}
        for row in rows:
            row._idp_names, row._idp_lineage = names, lineage
        return changelist

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: ApprovalRequest) -> SafeString:
        return compact_time(obj.created_at)

    @admin.display(description=_("user"), ordering="user__username")
    def user_name(self, obj: ApprovalRequest) -> str:
        return str(obj.user.get_username())

    @admin.display(description=_("agent → audience"), ordering="requester")
    def agent(self, obj: ApprovalRequest) -> SafeString:
        audience = strings(obj.audience)
        names = page_names(obj, [obj.requester, *audience, *strings(obj.chain)])
        requester = party_cell(obj) if getattr(obj, "party_pk", None) else names.uri(obj.requester)
        return format_html(
            '{}<div class="idp-audience">→ {}</div>', requester, party_chain(names, audience, sep=", ")
        )

    @admin.display(description=_("chain, newest first"))
    def chain_cell(self, obj: ApprovalRequest) -> SafeString:
        return party_chain(page_names(obj, strings(obj.chain)), strings(obj.chain))

    @admin.display(description=_("scope"), ordering="scope")
    def scope_cell(self, obj: ApprovalRequest) -> SafeString:
        return format_html('<span class="idp-mono">{}</span>', obj.scope or "-")

    @admin.display(description=_("status"), ordering="status")
    def state_column(self, obj: ApprovalRequest) -> SafeString:
        state = obj.state
        badge = STATE_BADGES.get(state, "warning")
        return format_html(
            '<span class="idp-status idp-status-{}">{} {}</span>',
            badge,
            STATUSES[badge][1],
            STATE_WORDS.get(state, state),
        )

    @admin.display(description=_("decided by"), ordering="decided_at")
    def decided(self, obj: ApprovalRequest) -> SafeString:
        if obj.decided_at is None:
            return format_html("{}", "-")
        who = obj.decided_by.get_username() if obj.decided_by is not None else "-"
        reused = (
            format_html('<br><span class="idp-quiet">{}</span>', _("reused an earlier approval"))
            if obj.reused_from_id is not None
            else ""
        )
        return format_html("{}<br>{}{}", who, compact_time(obj.decided_at), reused)

    @admin.display(description=_("reuse"))
    def reuse_cell(self, obj: ApprovalRequest) -> SafeString:
        if obj.reused_from_id is not None:
            url = reverse("admin:delegation_idp_approvalrequest_change", args=[obj.reused_from_id])
            return format_html('<a href="{}">{}</a>', url, _("reuses an earlier approval"))
        if not obj.reuse_seconds:
            return format_html("{}", _("never reused"))
        return format_html("{}", _("answers identical requests for %(n)d s") % {"n": obj.reuse_seconds})

    @admin.display(description=_("token issued"), ordering="issued_jti")
    def token(self, obj: ApprovalRequest) -> SafeString:
        if not obj.issued_jti:
            return format_html("{}", "-")
        lineage = getattr(obj, "_idp_lineage", None)
        if lineage is None:
            lineage = dict(TokenLineage.objects.filter(jti=obj.issued_jti).values_list("jti", "pk"))
        row = lineage.get(obj.issued_jti)
        if row is None:
            return short_jti(obj.issued_jti)
        url = reverse("admin:delegation_idp_tokenlineage_change", args=[row])
        return format_html('<a href="{}">{}</a>', url, short_jti(obj.issued_jti))
