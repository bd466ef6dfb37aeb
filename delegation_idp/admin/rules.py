"""Django admin for delegation rules: their form, the inline on the actor's page, the rule list
with its precedence, and the move up / move down controls.

* a rule is titled by its description (``DelegationRule.__str__``; without one, "actor →
  audiences"), never by its database id;
* its precedence (``position``, lowest first) is explicit: the first of an actor's rules that
  allows decides. The rule list edits it in place; the party page moves a rule up or down
  (a POST to :meth:`DelegationRuleAdmin.move_view`, with the ``change_delegationrule``
  permission), through :mod:`delegation_idp.provider.precedence`;
* parties are shown by name with their URI, linked (:mod:`delegation_idp.admin.display`);
* whether a hop it allows needs the user's approval (OpenID CIBA), and on which terms, has a
  fieldset of its own, checked by :func:`delegation_idp.admin.approvals.approval_errors`; the
  rule list shows it under each rule's title (a column would not fit at 1280 px) and filters
  by it, and so do the rule tables of the party pages.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.approvals import (
    APPROVAL_FIELDSET,
    ApprovalFields,
    approval_badge,
    approval_errors,
    approval_terms,
)
from delegation_idp.admin.display import MEDIA, party_link, status
from delegation_idp.models import DelegationRule
from delegation_idp.provider import precedence

__all__ = [
    "DelegationRuleAdmin",
    "DelegationRuleForm",
    "DelegationRuleInline",
    "describe_rule",
    "rule_rows",
    "rule_state",
    "validate_scope",
]

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def validate_scope(value: str) -> None:
    for token in value.split():
        if not set(token) <= _SCOPE_CHARS:
            raise ValidationError(_("Scopes are space-separated RFC 6749 scope tokens."), code="invalid")


class DelegationRuleForm(ApprovalFields):
    class Meta:
        model = DelegationRule
        fields = (
            "actor",
            "description",
            "enabled",
            "position",
            "audiences",
            "max_scope",
            "allow_direct_from_user",
            "upstream_actors",
            "max_depth",
            "users",
            "groups",
            "valid_from",
            "valid_until",
            "approval",
            "approval_scopes",
            "approval_min_depth",
            "approval_lifetime",
            "approval_reuse_seconds",
        )
        widgets = {
            "position": forms.NumberInput(attrs={"class": "vIntegerField", "min": 1}),
            "approval_scopes": forms.TextInput(attrs={"class": "vTextField"}),
            "approval_min_depth": forms.NumberInput(attrs={"class": "vIntegerField", "min": 1}),
            "approval_lifetime": forms.NumberInput(attrs={"class": "vIntegerField", "min": 10, "max": 86400}),
        }
        help_texts = {
            "approval_scopes": _(
                "Space-separated, within the largest scope. A hop granted any of them needs the "
                "user's approval."
            ),
            "approval_lifetime": _(
                "10 seconds to 24 hours. Empty: the APPROVAL_REQUEST_LIFETIME setting. Never longer "
                "than the subject token's own life."
            ),
        }

    def clean_position(self) -> int | None:
        position = self.cleaned_data.get("position")
        if position is None and self.instance.pk is not None:
            return self.instance.position  # emptied on an existing rule: it keeps its place
        return position

    def clean_max_scope(self) -> str:
        value = " ".join(self.cleaned_data["max_scope"].split())
        validate_scope(value)
        if not value:
            raise ValidationError(_("Name at least one scope."), code="required")
        return value

    def clean_approval_scopes(self) -> str:
        value = " ".join(str(self.cleaned_data.get("approval_scopes") or "").split())
        validate_scope(value)
        return value

    def clean_approval_reuse_seconds(self) -> int:
        value = self.cleaned_data.get("approval_reuse_seconds")
        return 0 if value is None else int(value)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name, error in approval_errors(data).items():
            if name not in self.errors:
                self.add_error(name, error)
        start, end = data.get("valid_from"), data.get("valid_until")
        if start and end and end <= start:
            raise ValidationError({"valid_until": _("The window must end after it starts.")})
        if not data.get("allow_direct_from_user") and not data.get("upstream_actors"):
            # Such a rule could never match: say so instead of silently denying.
            raise ValidationError(
                _("Allow it directly from a user token, or name upstream actors it may continue from.")
            )
        return data


class DelegationRuleInline(admin.StackedInline):
    model = DelegationRule
    form = DelegationRuleForm
    fk_name = "actor"
    extra = 0
    filter_horizontal = ("audiences", "upstream_actors", "groups")
    raw_id_fields = ("users",)

    def get_extra(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        # Registering an agent offers its first rule; a blank one is ignored.
        return 1 if obj is None else 0

    fieldsets = (
        (None, {"fields": ("description", ("enabled", "position"), "audiences", "max_scope")}),
        (_("Chain"), {"fields": ("allow_direct_from_user", "upstream_actors", "max_depth")}),
        (_("For whom and when"), {"fields": ("users", "groups", "valid_from", "valid_until")}),
        APPROVAL_FIELDSET,
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[DelegationRule]:
        # Titles ("actor → audiences" without a description) read the audiences.
        return super().get_queryset(request).select_related("actor").prefetch_related("audiences")


def rule_state(rule: DelegationRule, now: Any = None) -> SafeString:
    """Whether the rule is in effect now, as a word and a symbol."""
    now = now or timezone.now()
    if not rule.enabled:
        return format_html('<span class="idp-status idp-status-expired">\u2013 {}</span>', _("disabled"))
    if rule.valid_until is not None and rule.valid_until <= now:
        return status("expired")
    if rule.valid_from is not None and now < rule.valid_from:
        return format_html('<span class="idp-status idp-status-pending">… {}</span>', _("not yet"))
    return status("active")


def _parties(parties: Any) -> SafeString:
    links = [party_link(p) for p in parties]
    if not links:
        return format_html("-")
    return format_html_join("", '<span class="idp-party-item">{}</span>', ((link,) for link in links))


def rule_from(rule: DelegationRule) -> SafeString:
    """Whom the rule lets its actor continue from: a user token, upstream actors."""
    parts: list[SafeString] = []
    if rule.allow_direct_from_user:
        parts.append(format_html('<span class="idp-party-item">{}</span>', _("a user token")))
    upstream = list(rule.upstream_actors.all())
    if upstream:
        parts.append(_parties(upstream))
    return format_html_join("", "{}", ((p,) for p in parts)) if parts else format_html("-")


@admin.register(DelegationRule)
class DelegationRuleAdmin(admin.ModelAdmin):
    form = DelegationRuleForm
    list_display = (
        "position",
        "title",
        "actor_name",
        "audience_names",
        "scope",
        "continuing_from",
    )
    list_display_links = ("title",)
    list_editable = ("position",)
    # The list is always in precedence order within each actor (Meta.ordering); a sortable
    # precedence header would only widen its column.
    sortable_by = ("title", "actor_name", "scope")
    list_filter = (
        "enabled",
        "allow_direct_from_user",
        "approval",
        "actor__kind",
        ("actor", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = (
        "actor__uri",
        "actor__name",
        "audiences__uri",
        "audiences__name",
        "upstream_actors__uri",
        "max_scope",
        "description",
    )
    list_select_related = ("actor",)
    filter_horizontal = ("audiences", "upstream_actors", "groups")
    raw_id_fields = ("users",)
    actions = ["enable", "disable"]
    fieldsets = (
        (None, {"fields": ("actor", "description", ("enabled", "position"), "audiences", "max_scope")}),
        (_("Chain"), {"fields": ("allow_direct_from_user", "upstream_actors", "max_depth")}),
        (_("For whom and when"), {"fields": ("users", "groups", "valid_from", "valid_until")}),
        APPROVAL_FIELDSET,
    )

    @property
    def media(self) -> forms.Media:
        return super().media + MEDIA

    def get_queryset(self, request: HttpRequest) -> QuerySet[DelegationRule]:
        return super().get_queryset(request).prefetch_related("audiences", "upstream_actors")

    @admin.display(description=_("rule"), ordering="description")
    def title(self, rule: DelegationRule) -> SafeString:
        # Whether it is in effect, and whether its hops need the user's approval, go under its
        # title: columns fewer at 1280 px.
        if rule.approval_view() is None:
            return format_html("{}<br>{}", rule, rule_state(rule))
        return format_html("{}<br>{}<br>{}", rule, rule_state(rule), approval_badge(rule))

    @admin.display(description=_("actor"), ordering="actor__name")
    def actor_name(self, rule: DelegationRule) -> SafeString:
        return party_link(rule.actor)

    @admin.display(description=_("audiences"))
    def audience_names(self, rule: DelegationRule) -> SafeString:
        return _parties(rule.audiences.all())

    @admin.display(description=_("scope"), ordering="max_scope")
    def scope(self, rule: DelegationRule) -> SafeString:
        return format_html('<span class="idp-mono">{}</span>', rule.max_scope)

    @admin.display(description=_("from"))
    def continuing_from(self, rule: DelegationRule) -> SafeString:
        if rule.max_depth is None:
            return rule_from(rule)
        depth = _("at depth ≤ %(n)d") % {"n": rule.max_depth}
        return format_html('{}<span class="idp-quiet">{}</span>', rule_from(rule), depth)

    @admin.display(description=_("in effect"))
    def state(self, rule: DelegationRule) -> SafeString:
        return rule_state(rule)

    @admin.action(description=_("Enable selected rules"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[DelegationRule]) -> None:
        count = queryset.update(enabled=True, updated=timezone.now())
        self.message_user(request, _("%(n)d rule(s) enabled.") % {"n": count}, messages.SUCCESS)

    @admin.action(description=_("Disable selected rules"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[DelegationRule]) -> None:
        count = queryset.update(enabled=False, updated=timezone.now())
        self.message_user(request, _("%(n)d rule(s) disabled.") % {"n": count}, messages.SUCCESS)

    # -- move up / move down -----------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/move/", wrap(self.move_view), name="delegation_idp_delegationrule_move"),
            *super().get_urls(),
        ]

    def move_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Move one rule a place earlier or later among its actor's rules (POST only;
        ``admin_view`` checks the CSRF token)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        rule = get_object_or_404(DelegationRule.objects.select_related("actor"), pk=object_id)
        if not self.has_change_permission(request, rule):
            raise PermissionDenied
        direction = request.POST.get("direction")
        if direction not in ("up", "down"):
            return HttpResponse(status=400)
        moved = precedence.move(rule, precedence.UP if direction == "up" else precedence.DOWN)
        rule.refresh_from_db(fields=["position"])
        if moved:
            self.message_user(
                request,
                _("“%(rule)s” is now number %(n)d in precedence for %(actor)s.")
                % {"rule": rule, "n": rule.position, "actor": rule.actor.name},
                messages.SUCCESS,
            )
        else:
            self.message_user(request, _("“%(rule)s” did not move.") % {"rule": rule}, messages.INFO)
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = reverse("admin:delegation_idp_party_change", args=[rule.actor_id]) + "#rules"
        return HttpResponseRedirect(target)


def describe_rule(rule: DelegationRule) -> dict[str, Any]:
    """A rule in the words the read-only pages use (URIs, and the parties to show by name)."""
    upstream_parties = list(rule.upstream_actors.all())
    audience_parties = list(rule.audiences.all())
    upstream = [p.uri for p in upstream_parties]
    return {
        "rule": rule,
        "title": str(rule),
        "actor": rule.actor.uri,
        "actor_link": party_link(rule.actor),
        "audiences": [p.uri for p in audience_parties],
        "audience_links": _parties(audience_parties),
        "scope": rule.max_scope,
        "from": ([_("a user token")] if rule.allow_direct_from_user else []) + upstream,
        "from_links": rule_from(rule),
        "depth": rule.max_depth,
        "users": [u.get_username() for u in rule.users.all()],
        "groups": [g.name for g in rule.groups.all()],
        "in_effect": rule.as_view().in_effect(timezone.now()),
        "state": rule_state(rule),
        "approval": approval_terms(rule),
        "approval_badge": approval_badge(rule),
    }


def rule_rows(queryset: QuerySet[DelegationRule]) -> list[dict[str, Any]]:
    """:func:`describe_rule` of each rule, in precedence order, with their relations read at once."""
    rows = queryset.select_related("actor").prefetch_related(
        "audiences", "upstream_actors", "users", "groups"
    )
    described = [describe_rule(rule) for rule in rows]
    firsts: dict[Any, dict[str, Any]] = {}
    lasts: dict[Any, dict[str, Any]] = {}
    for row in described:
        firsts.setdefault(row["rule"].actor_id, row)
        lasts[row["rule"].actor_id] = row
    for row in described:
        row["first"] = firsts[row["rule"].actor_id] is row
        row["last"] = lasts[row["rule"].actor_id] is row
    return described
