"""Django admin for registered parties and their delegation rules.

* Adding an agent or MCP server creates its confidential client; the generated
  secret is shown on one page, once, and only its hash is stored.
* Rules are edited inline on the actor, and listed on their own with filters.
* Each party has a read-only page of the rules it is subject to and named in.
* "Try a delegation" runs the real evaluator on a chosen chain, audience and
  scope and shows the decision, its reason and every rule's outcome; or the real
  redemption's decisions on the claims of an ID-JAG of a trusted issuer; it only
  reads.

Why one module over 400 lines: the party admin, its rule inline, the rule admin and the
"try a delegation" page edit and show one thing, the policy, and share their forms.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.try_delegation import try_delegation_page, validate_scope
from delegation_idp.models import DelegationRule, Party, validate_identity_uri
from delegation_idp.provider import self_registered
from delegation_idp.provider.agents import register_party
from delegation_idp.provider.client_auth import validate_client_jwks

# -- delegation rules -------------------------------------------------------------


class DelegationRuleForm(forms.ModelForm):
    class Meta:
        model = DelegationRule
        fields = (
            "actor",
            "description",
            "enabled",
            "audiences",
            "max_scope",
            "allow_direct_from_user",
            "upstream_actors",
            "max_depth",
            "users",
            "groups",
            "valid_from",
            "valid_until",
        )

    def clean_max_scope(self) -> str:
        value = " ".join(self.cleaned_data["max_scope"].split())
        validate_scope(value)
        if not value:
            raise ValidationError(_("Name at least one scope."), code="required")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
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

    def get_extra(self, request: HttpRequest, obj: Party | None = None, **kwargs: Any) -> int:
        # Registering an agent offers its first rule; a blank one is ignored.
        return 1 if obj is None else 0

    fieldsets = (
        (None, {"fields": ("description", "enabled", "audiences", "max_scope")}),
        (_("Chain"), {"fields": ("allow_direct_from_user", "upstream_actors", "max_depth")}),
        (_("For whom and when"), {"fields": ("users", "groups", "valid_from", "valid_until")}),
    )


@admin.register(DelegationRule)
class DelegationRuleAdmin(admin.ModelAdmin):
    form = DelegationRuleForm
    list_display = (
        "__str__",
        "actor",
        "audience_list",
        "max_scope",
        "allow_direct_from_user",
        "max_depth",
        "enabled",
        "valid_from",
        "valid_until",
    )
    list_filter = (
        "enabled",
        "allow_direct_from_user",
        "actor__kind",
        ("actor", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = (
        "actor__uri",
        "actor__name",
        "audiences__uri",
        "upstream_actors__uri",
        "max_scope",
        "description",
    )
    list_select_related = ("actor",)
    filter_horizontal = ("audiences", "upstream_actors", "groups")
    raw_id_fields = ("users",)
    actions = ["enable", "disable"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DelegationRule]:
        return super().get_queryset(request).prefetch_related("audiences")

    @admin.display(description=_("target audiences"))
    def audience_list(self, rule: DelegationRule) -> str:
        return ", ".join(p.uri for p in rule.audiences.all())

    @admin.action(description=_("Enable selected rules"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[DelegationRule]) -> None:
        count = queryset.update(enabled=True, updated=timezone.now())
        self.message_user(request, _("%(n)d rule(s) enabled.") % {"n": count}, messages.SUCCESS)

    @admin.action(description=_("Disable selected rules"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[DelegationRule]) -> None:
        count = queryset.update(enabled=False, updated=timezone.now())
        self.message_user(request, _("%(n)d rule(s) disabled.") % {"n": count}, messages.SUCCESS)


def describe_rule(rule: DelegationRule) -> dict[str, Any]:
    """A rule in the words the read-only pages use."""
    upstream = [p.uri for p in rule.upstream_actors.all()]
    return {
        "rule": rule,
        "actor": rule.actor.uri,
        "audiences": [p.uri for p in rule.audiences.all()],
        "scope": rule.max_scope,
        "from": ([_("a user token")] if rule.allow_direct_from_user else []) + upstream,
        "depth": rule.max_depth,
        "users": [u.get_username() for u in rule.users.all()],
        "groups": [g.name for g in rule.groups.all()],
        "in_effect": rule.as_view().in_effect(timezone.now()),
    }


def _rules(queryset: QuerySet[DelegationRule]) -> list[dict[str, Any]]:
    rows = queryset.select_related("actor").prefetch_related(
        "audiences", "upstream_actors", "users", "groups"
    )
    return [describe_rule(rule) for rule in rows]


# -- parties -----------------------------------------------------------------------


class PartyAddForm(forms.ModelForm):
    """The add form: agents and MCP servers get a new confidential client."""

    redirect_uris = forms.CharField(
        label=_("redirect URIs"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_(
            "Space- or line-separated. With redirect URIs the client uses the authorization-code flow; "
            "without, client credentials. Ignored for resource servers."
        ),
    )

    class Meta:
        model = Party
        fields = (
            "uri",
            "name",
            "kind",
            "contact",
            "enabled",
            "resource_prefixes",
            "dpop_required",
            "metadata_url",
            "client_ids",
        )

    def clean_redirect_uris(self) -> str:
        uris = self.cleaned_data["redirect_uris"].split()
        for uri in uris:
            validate_identity_uri(uri)
        return " ".join(uris)


class PartyChangeForm(forms.ModelForm):
    """The change form: a client JWK set is checked as it is saved."""

    class Meta:
        model = Party
        fields = ("jwks",)  # the admin's fieldsets choose the form's fields

    def clean_jwks(self) -> Any:
        jwks = self.cleaned_data.get("jwks")
        if jwks is not None:
            problems = validate_client_jwks(jwks)
            if problems:
                raise ValidationError(problems, code="invalid")
        return jwks


class HasClientFilter(admin.SimpleListFilter):
    title = _("OAuth client")
    parameter_name = "has_client"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("linked")), ("no", _("none"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Party]) -> QuerySet[Party]:
        if self.value() == "yes":
            return queryset.filter(application__isnull=False)
        if self.value() == "no":
            return queryset.filter(application__isnull=True)
        return queryset


@admin.register(Party)
class PartyAdmin(admin.ModelAdmin):
    form = PartyChangeForm
    list_display = (
        "name",
        "uri",
        "kind",
        "registration",
        "enabled",
        "dpop_required",
        "client_id",
        "rule_count",
    )
    list_filter = ("kind", "enabled", "registration", "dpop_required", HasClientFilter)
    search_fields = ("name", "uri", "contact", "application__client_id", "resource_prefixes")
    list_select_related = ("application",)
    raw_id_fields = ("application", "clients")
    readonly_fields = ("client_id", "registration", "rules_link", "created", "updated")
    inlines = [DelegationRuleInline]
    actions = ["enable", "disable", "promote"]
    change_list_template = "delegation_idp/admin/party_change_list.html"
    change_form_template = "delegation_idp/admin/party_change_form.html"
    fieldsets = (
        (None, {"fields": ("uri", "name", "kind", "contact", "enabled", "registration")}),
        (_("Client"), {"fields": ("client_id", "application", "jwks", "dpop_required")}),
        (_("RFC 8707 resources"), {"fields": ("resource_prefixes", "clients")}),
        (_("External authorization server (ID-JAG)"), {"fields": ("metadata_url", "client_ids")}),
        (_("Policy"), {"fields": ("rules_link", "created", "updated")}),
    )
    add_fieldsets = (
        (None, {"fields": ("uri", "name", "kind", "contact", "enabled")}),
        (_("Client"), {"fields": ("redirect_uris", "dpop_required")}),
        (_("RFC 8707 resources"), {"fields": ("resource_prefixes",)}),
        (_("External authorization server (ID-JAG)"), {"fields": ("metadata_url", "client_ids")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Party]:
        return super().get_queryset(request).annotate(_rule_count=Count("delegation_rules"))

    @admin.display(description=_("client id"), ordering="application__client_id")
    def client_id(self, party: Party) -> str:
        return party.application.client_id if party.application else "-"

    @admin.display(description=_("rules"), ordering="_rule_count")
    def rule_count(self, party: Party) -> int:
        return int(getattr(party, "_rule_count", 0))

    @admin.display(description=_("rules this party is subject to"))
    def rules_link(self, party: Party) -> str:
        if party.pk is None:
            return "-"
        url = reverse("admin:delegation_idp_party_rules", args=[party.pk])
        return format_html('<a href="{}">{}</a>', url, _("View the rules (read-only)"))

    # -- adding: the client and its one-time secret -------------------------------

    def get_form(
        self, request: HttpRequest, obj: Party | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = PartyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Party | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Party | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Party, form: Any, change: bool) -> None:
        if change or obj.kind in (Party.RESOURCE_SERVER, Party.AUTHORIZATION_SERVER):
            # Neither is a client here: an external authorization server redeems, never asks.
            super().save_model(request, obj, form, change)
            return
        # One place creates clients and stores their secrets: agents.register_party.
        registration = register_party(
            obj.uri,
            obj.name,
            obj.kind,
            contact=obj.contact,
            redirect_uris=form.cleaned_data.get("redirect_uris", ""),
            resource_prefixes=obj.resource_prefixes,
            dpop_required=obj.dpop_required,
        )
        created = registration.party
        obj.pk, obj.application, obj.created = created.pk, created.application, created.created
        obj._state.adding = False
        if obj.enabled != created.enabled:
            obj.save(update_fields=["enabled", "updated"])
        obj._one_time_secret = (registration.client_id, registration.client_secret)  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Party, post_url_continue: str | None = None) -> Any:
        one_time = getattr(obj, "_one_time_secret", None)
        if one_time is None or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        client_id, secret = one_time
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "party": obj,
            "client_id": client_id,
            "client_secret": secret,
            "change_url": reverse("admin:delegation_idp_party_change", args=[obj.pk]),
            "title": _("Client secret for %(name)s") % {"name": obj.name},
        }
        response = TemplateResponse(request, "delegation_idp/admin/party_secret.html", context)
        # The page is the only copy of the secret: never cache it anywhere.
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response

    # -- enable / disable ------------------------------------------------------------

    @admin.action(description=_("Enable selected parties"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        for party in queryset:
            party.enabled = True
            party.save()
        self.message_user(request, _("Enabled."), messages.SUCCESS)

    @admin.action(
        description=_("Disable selected parties (revokes their live tokens)"), permissions=["change"]
    )
    def disable(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        # One save per party so the signal revokes each one's live tokens.
        for party in queryset:
            party.enabled = False
            party.save()
        self.message_user(request, _("Disabled; their live tokens are revoked."), messages.SUCCESS)

    @admin.action(
        description=_("Promote selected self-registered clients to fully registered agents"),
        permissions=["change"],
    )
    def promote(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        # The registration rules that governed each one become rules of its own.
        promoted = [party for party in queryset if party.self_registered]
        for party in promoted:
            self_registered.promote(party)
        self.message_user(
            request,
            _(
                "Promoted %(count)d: each is now governed by rules of its own, copied from the "
                "registration rules that governed it."
            )
            % {"count": len(promoted)},
            messages.SUCCESS,
        )

    # -- read-only pages -------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("try/", wrap(self.try_delegation_view), name="delegation_idp_party_try"),
            path("<path:object_id>/rules/", wrap(self.rules_view), name="delegation_idp_party_rules"),
            *super().get_urls(),
        ]

    def rules_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The rules a party is subject to (as actor), and those that name it."""
        party = get_object_or_404(Party, pk=object_id)
        if not self.has_view_permission(request, party):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "party": party,
            "original": party,
            "title": _("Delegation rules of %(name)s") % {"name": party.name},
            "as_actor": _rules(DelegationRule.objects.filter(actor=party)),
            "as_audience": _rules(DelegationRule.objects.filter(audiences=party)),
            "as_upstream": _rules(DelegationRule.objects.filter(upstream_actors=party)),
        }
        return TemplateResponse(request, "delegation_idp/admin/party_rules.html", context)

    def try_delegation_view(self, request: HttpRequest) -> HttpResponse:
        """The "Try a delegation" page (:mod:`delegation_idp.admin.try_delegation`)."""
        return try_delegation_page(self, request)
