"""Django admin for registered parties and their delegation rules.

* Adding an agent or MCP server creates its confidential client; the generated
  secret is shown on one page, once, and only its hash is stored. "Reissue the client
  secret" (an action, and a button on the party page) asks first, then shows the new one
  the same way (:mod:`delegation_idp.admin.party_pages`).
* A party is listed by name with its URI, with its number of rules ("⚠ none" for an agent
  or MCP server that has none, whose change page warns too). Its page shows its client id
  read-only, its JWK set checked and summarised (:mod:`delegation_idp.admin.party_forms`),
  and its rules in precedence order with move up / move down controls.
* Rules are edited inline on the actor, and listed on their own with filters and their
  precedence (:mod:`delegation_idp.admin.rules`).
* Each party has a read-only page of the rules it is subject to and named in.
* "Try a delegation" (a page of the party admin) is :mod:`delegation_idp.admin.try_delegation`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin import party_pages
from delegation_idp.admin.display import MEDIA, status
from delegation_idp.admin.party_forms import PartyChangeForm, client_summary, jwks_summary
from delegation_idp.admin.rules import DelegationRuleInline, rule_rows
from delegation_idp.admin.try_delegation import try_delegation_page
from delegation_idp.models import DelegationRule, Party, validate_identity_uri
from delegation_idp.provider import self_registered
from delegation_idp.provider.agents import register_party

# -- parties -----------------------------------------------------------------------

#: a party's kind in the party list, in few words
SHORT_KINDS = {
    Party.AGENT: _("agent"),
    Party.MCP_SERVER: _("MCP server"),
    Party.RESOURCE_SERVER: _("resource server"),
    Party.AUTHORIZATION_SERVER: _("external authorization server"),
}


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
    # Five columns, so the list reads at 1280 px beside the admin's two sidebars: how a party
    # registered and whether it needs DPoP are a quieter line under its kind (and filters).
    list_display = ("party", "kind_of", "state", "client_id", "rule_count")
    list_display_links = ("party",)
    list_filter = ("kind", "enabled", "registration", "dpop_required", HasClientFilter)
    search_fields = ("name", "uri", "contact", "application__client_id", "resource_prefixes")
    list_select_related = ("application",)
    raw_id_fields = ("application", "clients")
    readonly_fields = ("client", "client_keys", "registration", "rules_link", "created", "updated")
    inlines = [DelegationRuleInline]
    actions = ["enable", "disable", "promote", "reissue_secret"]
    change_list_template = "delegation_idp/admin/party_change_list.html"
    change_form_template = "delegation_idp/admin/party_change_form.html"
    fieldsets = (
        (None, {"fields": ("uri", "name", "kind", "contact", "enabled", "registration")}),
        (_("Client"), {"fields": ("client", "client_keys", "jwks", "dpop_required")}),
        (_("RFC 8707 resources"), {"fields": ("resource_prefixes", "clients")}),
        (_("External authorization server (ID-JAG)"), {"fields": ("metadata_url", "client_ids")}),
        (_("Policy"), {"fields": ("rules_link", "created", "updated")}),
    )
    # A resource server's client (for introspection) is linked by hand, so it stays editable.
    resource_server_client = ("client", "application", "client_keys", "jwks", "dpop_required")
    add_fieldsets = (
        (None, {"fields": ("uri", "name", "kind", "contact", "enabled")}),
        (_("Client"), {"fields": ("redirect_uris", "dpop_required")}),
        (_("RFC 8707 resources"), {"fields": ("resource_prefixes",)}),
        (_("External authorization server (ID-JAG)"), {"fields": ("metadata_url", "client_ids")}),
    )

    @property
    def media(self) -> forms.Media:
        return super().media + MEDIA

    def get_queryset(self, request: HttpRequest) -> QuerySet[Party]:
        return super().get_queryset(request).annotate(_rule_count=Count("delegation_rules"))

    @admin.display(description=_("party"), ordering="name")
    def party(self, party: Party) -> str:
        # The column is the row's link: the name and, quieter, the identity URI.
        return format_html(
            '<span class="idp-party"><strong>{}</strong></span><br><span class="idp-uri">{}</span>',
            party.name or party.uri,
            party.uri,
        )

    @admin.display(description=_("kind"), ordering="kind")
    def kind_of(self, party: Party) -> str:
        notes: list[str] = []
        if party.self_registered:
            notes.append(party.get_registration_display())
        if party.dpop_required:
            notes.append(str(_("DPoP required")))
        return format_html(
            "{}{}",
            SHORT_KINDS.get(party.kind, party.kind),
            format_html('<br><span class="idp-quiet">{}</span>', "; ".join(str(n) for n in notes))
            if notes
            else "",
        )

    @admin.display(description=_("enabled"), ordering="enabled")
    def state(self, party: Party) -> str:
        if party.enabled:
            return status("active")
        return format_html('<span class="idp-status idp-status-revoked">✕ {}</span>', _("disabled"))

    @admin.display(description=_("client id"), ordering="application__client_id")
    def client_id(self, party: Party) -> str:
        if party.application is None:
            return "-"
        client_id = party.application.client_id
        # The start is enough to tell clients apart; the whole id is on the party's page.
        short = client_id if len(client_id) <= 12 else f"{client_id[:10]}…"
        return format_html('<span class="idp-mono" title="{}">{}</span>', client_id, short)

    @admin.display(description=_("OAuth client"))
    def client(self, party: Party) -> str:
        return client_summary(party)

    @admin.display(description=_("client keys (private_key_jwt)"))
    def client_keys(self, party: Party) -> str:
        return jwks_summary(party.jwks)

    @admin.display(description=_("rules"), ordering="_rule_count")
    def rule_count(self, party: Party) -> str:
        count = int(getattr(party, "_rule_count", 0))
        if party.kind not in party_pages.ACTING_KINDS:
            return format_html('<span class="idp-quiet">{}</span>', _("not an actor"))
        if party.self_registered:
            return format_html('<span class="idp-quiet">{}</span>', _("registration rules"))
        if count == 0:
            return format_html(
                '<span class="idp-status idp-status-warning idp-no-rules" title="{}">⚠ {}</span>',
                _("Every exchange it asks for is refused (no_rule)."),
                _("none"),
            )
        return str(count)

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
        if obj is None:
            return self.add_fieldsets
        if obj.kind == Party.RESOURCE_SERVER:
            client = ((_("Client"), {"fields": self.resource_server_client}),)
            return self.fieldsets[:1] + client + self.fieldsets[2:]
        return self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Party | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        party = self.get_object(request, object_id)
        if party is not None:
            extra_context = {**(extra_context or {}), **party_pages.change_context(request, party)}
        return super().change_view(request, object_id, form_url, extra_context)

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
        return party_pages.secret_page(self, request, obj, client_id, secret, reissued=False)

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

    @admin.action(description=_("Reissue the client secret of the selected party…"), permissions=["change"])
    def reissue_secret(self, request: HttpRequest, queryset: QuerySet[Party]) -> HttpResponse | None:
        # One party at a time: its new secret is shown on a page of its own, once.
        parties = list(queryset.select_related("application")[:2])
        if len(parties) != 1:
            self.message_user(request, _("Reissue one party's secret at a time."), messages.WARNING)
            return None
        if not party_pages.has_secret(parties[0]):
            self.message_user(
                request,
                _("%(name)s has no client secret to reissue.") % {"name": parties[0].name},
                messages.ERROR,
            )
            return None
        return party_pages.reissue_confirmation(self, request, parties[0])

    # -- read-only pages -------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("try/", wrap(self.try_delegation_view), name="delegation_idp_party_try"),
            path("<path:object_id>/rules/", wrap(self.rules_view), name="delegation_idp_party_rules"),
            path(
                "<path:object_id>/reissue-secret/",
                wrap(self.reissue_secret_view),
                name="delegation_idp_party_reissue_secret",
            ),
            *super().get_urls(),
        ]

    def reissue_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then reissue the party's client secret and show it once."""
        return party_pages.reissue_secret_view(self, request, object_id)

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
            "as_actor": rule_rows(DelegationRule.objects.filter(actor=party)),
            "as_audience": rule_rows(DelegationRule.objects.filter(audiences=party)),
            "as_upstream": rule_rows(DelegationRule.objects.filter(upstream_actors=party)),
            "media": MEDIA,
        }
        return TemplateResponse(request, "delegation_idp/admin/party_rules.html", context)

    def try_delegation_view(self, request: HttpRequest) -> HttpResponse:
        """The "Try a delegation" page (:mod:`delegation_idp.admin.try_delegation`)."""
        return try_delegation_page(self, request)
