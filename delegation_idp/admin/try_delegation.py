"""The admin's "Try a delegation" page: its form and its view (served under the party admin,
``admin:delegation_idp_party_try``, ``/admin/delegation_idp/party/try/``).

It runs the real evaluator on a hypothetical exchange, ID-JAG request or authorization
request (:func:`delegation_idp.provider.dry_run.try_delegation`), or the real redemption's
decisions on the claims of a hypothetical ID-JAG
(:func:`delegation_idp.provider.dry_run.try_redemption`), and shows:

* the decision as an allowed/refused badge, its reason code, plain words and OAuth error;
  the issued chain, the granted scope and the audience only when a token would be issued;
* "allowed after the user's approval (approval_required)" when the allowing rule needs the
  user's approval (OpenID CIBA), with its terms: how long the request waits, how long an
  approval answers identical requests;
* which audiences the agent's rules would allow for the chain, user and scope given, so a
  refusal for an audience says which ones the rules name (computed by the dry run with the
  same policy functions);
* each of the agent's rules, titled by its description, with its audiences and outcome;
* every party by name with its URI, linked to its page (:mod:`delegation_idp.admin.display`).

``manage.py explain`` uses the same form. The page reads only: a GET form, nothing issued.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import get_application_model

from delegation_idp.admin.approvals import summary_words
from delegation_idp.admin.display import MEDIA, PartyNames, party_link, status
from delegation_idp.admin.rules import validate_scope
from delegation_idp.core import policy
from delegation_idp.core.reasons import Reason
from delegation_idp.models import DelegationRule, Party, TrustedIssuer
from delegation_idp.provider import dry_run
from delegation_idp.rfc7523.redeem import MAX_SUBJECT_LENGTH

__all__ = ["TryDelegationForm", "rule_title", "try_delegation_page"]


class OptionalJSONField(forms.JSONField):
    """A JSON field whose empty value shows as empty, not as ``null``."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


class TryDelegationForm(forms.Form):
    """The inputs of one hypothetical exchange, of one authorization request for another
    party's resource (RFC 8707 at the authorization endpoint), or of one redemption of an
    ID-JAG of a trusted issuer (RFC 7523); each kind's fields are required for it only."""

    EXCHANGE = "exchange"
    ID_JAG = "id_jag"
    AUTHORIZE = "authorize"
    REDEEM = "redeem"
    #: the fields every kind but a redemption needs, and those a redemption needs
    DELEGATION_FIELDS = ("actor", "audiences", "subject_scope")
    REDEEM_FIELDS = ("trusted_issuer", "client", "id_jag_sub")

    request_kind = forms.ChoiceField(
        label=_("request"),
        choices=[
            (EXCHANGE, _("token exchange (RFC 8693) of a subject token")),
            (ID_JAG, _("token exchange for an ID-JAG, for an external authorization server")),
            (AUTHORIZE, _("authorization endpoint: a user authorizes the agent for the targets (RFC 8707)")),
            (REDEEM, _("jwt-bearer redemption of an ID-JAG from a trusted issuer (RFC 7523)")),
        ],
        initial=EXCHANGE,
        required=False,
    )
    actor = forms.ModelChoiceField(
        label=_("requesting agent"),
        queryset=Party.objects.filter(kind__in=[Party.AGENT, Party.MCP_SERVER]),
        required=False,
    )
    chain = forms.CharField(
        label=_("subject token's actor chain"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Identity URIs, the nearest (most recent) actor first, one a line. Empty: a user token."),
    )
    audiences = forms.ModelMultipleChoiceField(
        label=_("target audiences"), queryset=Party.objects.all(), required=False
    )
    username = forms.CharField(label=_("user"), required=False, help_text=_("Empty: no particular user."))
    subject_scope = forms.CharField(
        label=_("subject token's scope"), validators=[validate_scope], required=False
    )
    requested_scope = forms.CharField(
        label=_("requested scope"),
        required=False,
        validators=[validate_scope],
        help_text=_("Empty: no scope parameter."),
    )
    may_act = OptionalJSONField(
        label=_("subject token's may_act"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_('JSON, e.g. {"sub": "https://agent.example.com"}. Empty: none.'),
    )
    # -- a redemption only -----------------------------------------------------------------
    trusted_issuer = forms.ModelChoiceField(
        label=_("trusted issuer (redemption)"),
        queryset=TrustedIssuer.objects.all(),
        required=False,
        help_text=_("The ID-JAG's iss."),
    )
    client = forms.ModelChoiceField(
        label=_("redeeming client (redemption)"),
        queryset=get_application_model().objects.all(),
        required=False,
        help_text=_("The local client that sends the jwt-bearer request: the ID-JAG's client_id."),
    )
    id_jag_sub = forms.CharField(
        label=_("ID-JAG's sub (redemption)"),
        required=False,
        max_length=MAX_SUBJECT_LENGTH,  # a longer sub is refused as malformed
    )
    id_jag_claim = forms.CharField(
        label=_("ID-JAG's value of the issuer's claim (redemption)"),
        required=False,
        help_text=_(
            "For an issuer that maps an existing user by a claim other than sub (e.g. email): "
            "its value. Empty: the ID-JAG lacks it."
        ),
    )
    id_jag_resources = forms.CharField(
        label=_("resources the ID-JAG names (redemption)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Its resource claim, one a line. Empty: none."),
    )
    resources = forms.CharField(
        label=_("requested resources (redemption)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("The resource parameters, one a line. Empty: none (all those the ID-JAG names)."),
    )
    id_jag_scope = forms.CharField(
        label=_("ID-JAG's scope (redemption)"),
        required=False,
        validators=[validate_scope],
        help_text=_("Empty: no scope claim. The requested scope above is the request's."),
    )
    dpop = forms.BooleanField(
        label=_("with a DPoP proof (redemption)"),
        required=False,
        help_text=_("The request proves a key (RFC 9449): the token would be bound to it."),
    )

    def clean_chain(self) -> tuple[str, ...]:
        return tuple(self.cleaned_data["chain"].split())

    def clean_id_jag_resources(self) -> tuple[str, ...]:
        return tuple(self.cleaned_data["id_jag_resources"].split())

    def clean_resources(self) -> tuple[str, ...]:
        return tuple(self.cleaned_data["resources"].split())

    def clean_request_kind(self) -> str:
        return self.cleaned_data.get("request_kind") or self.EXCHANGE

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("request_kind")
        needed = self.REDEEM_FIELDS if kind == self.REDEEM else self.DELEGATION_FIELDS
        for name in needed:
            if name not in self.errors and not data.get(name):
                self.add_error(
                    name, ValidationError(self.fields[name].error_messages["required"], code="required")
                )
        if kind == self.AUTHORIZE and data.get("chain"):
            self.add_error("chain", _("At the authorization endpoint there is no chain: leave it empty."))
        return data

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"].strip()
        if not username:
            return None
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise ValidationError(_("No such user."))
        return user

    def try_delegation(self) -> dry_run.DryRun:
        """The dry run of the exchange, ID-JAG request or authorization request a valid form
        of another kind than :attr:`REDEEM` describes."""
        data = self.cleaned_data
        requested = policy.scope_set(data["requested_scope"]) if data["requested_scope"] else None
        return dry_run.try_delegation(
            data["actor"],
            data["chain"],
            [p.uri for p in data["audiences"]],
            subject_scope=policy.scope_set(data["subject_scope"]),
            requested_scope=requested,
            user=data["username"],
            may_act=data["may_act"],
            authorize=data["request_kind"] == self.AUTHORIZE,
            id_jag=data["request_kind"] == self.ID_JAG,
        )

    def try_redemption(self) -> dry_run.RedemptionDryRun:
        """The dry run of the redemption a valid form of kind :attr:`REDEEM` describes."""
        data = self.cleaned_data
        return dry_run.try_redemption(
            data["trusted_issuer"],
            data["client"],
            sub=data["id_jag_sub"],
            asserted_resources=data["id_jag_resources"],
            requested_resources=data["resources"],
            asserted_scope=" ".join(data["id_jag_scope"].split()) or None,
            requested_scope=" ".join(data["requested_scope"].split()) or None,
            claim_value=data["id_jag_claim"],
            dpop=data["dpop"],
        )


def rule_title(rule: DelegationRule | None, rule_id: int | None) -> str:
    """A rule as the page and ``manage.py explain`` title it: its description, else its number."""
    if rule is not None and rule.description:
        return rule.description
    return str(_("rule %(id)s (no description)") % {"id": rule_id})


def delegation_result(run: dry_run.DryRun, actor: Party) -> dict[str, Any]:
    """The page's view of a dry run: plain values, and every party as a linked name."""
    decision = run.decision
    rules = {r.pk: r for r in DelegationRule.objects.filter(actor=actor).prefetch_related("audiences")}
    requested = tuple(run.context.targets)
    names = PartyNames(
        uris=[
            *run.context.chain,
            *requested,
            *decision.audience,
            *(a.uri for a in run.allowed),
        ]
    )
    allowed_uris = {a.uri for a in run.allowed}

    def title(rule_id: int | None) -> str:
        return rule_title(rules.get(rule_id) if rule_id is not None else None, rule_id)

    approval = dry_run.approval_summary(run.approval)
    reason = run.reason
    return {
        "decision": decision,
        "status": status("approval" if approval else "allowed" if decision.allowed else "refused"),
        "reason": reason.value,
        "error": reason.error if reason is not Reason.ALLOWED else None,
        "description": reason.description,
        "approval": approval,
        "approval_terms": summary_words(approval) if approval else "",
        "granted_scope": " ".join(sorted(decision.granted_scope)),
        "audience": decision.audience,
        "audience_links": [names.uri(uri) for uri in decision.audience],
        "actor": party_link(actor),
        "chain": [names.uri(uri) for uri in run.context.chain],
        "requested": [{"party": names.uri(uri), "allowed": uri in allowed_uris} for uri in requested],
        "depth": run.context.depth,
        # Only a token that would be issued has a chain: a refusal shows none.
        "issued_chain": run.issued_chain,
        "issued_chain_links": (
            [party_link(actor), *(names.uri(uri) for uri in run.context.chain)] if decision.allowed else []
        ),
        "authorize": run.authorize,
        "limits": run.limits,
        "matching_rule": title(decision.rule_id) if decision.rule_id is not None else "",
        "allowed_audiences": [
            {
                "uri": a.uri,
                "party": names.uri(a.uri),
                "rule_id": a.rule_id,
                "rule": title(a.rule_id),
                "scope": " ".join(sorted(a.granted_scope)),
                "needs_approval": a.approval is not None,
            }
            for a in run.allowed
        ],
        "outcomes": [
            {
                "rule": rules.get(o.rule_id),
                "id": o.rule_id,
                "title": title(o.rule_id),
                "reason": o.reason.value,
                "status": status("allowed" if o.reason is Reason.ALLOWED else "refused"),
                "audiences": (
                    [party_link(p) for p in rules[o.rule_id].audiences.all()] if o.rule_id in rules else []
                ),
            }
            for o in run.explanation.rules
        ],
    }


def redemption_result(run: dry_run.RedemptionDryRun) -> dict[str, Any]:
    """The page's view of a redemption's dry run: the summary, and its parties named."""
    summary = run.summary()
    names = PartyNames(client_ids=[summary["client_id"]], uris=summary["owners"])
    return {
        "redeem": True,
        **summary,
        "status": status("allowed" if summary["allowed"] else "refused"),
        "client": names.client(summary["client_id"]),
        "owner_links": [names.uri(uri) for uri in summary["owners"]],
    }


def may_view_users(request: HttpRequest) -> bool:
    """Whether the signed-in admin may view the site's users (the user model's view permission)."""
    opts = get_user_model()._meta
    return bool(request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"))


def try_delegation_page(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The page (the party admin's view ``try/``): needs the view permission on parties.
    Reads only, writes nothing (a GET form; ``admin_view`` already marks it never-cached)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = TryDelegationForm(request.GET or None)
    result = None
    if form.is_valid() and form.cleaned_data["request_kind"] == TryDelegationForm.REDEEM:
        if may_view_users(request):
            result = redemption_result(form.try_redemption())
        else:
            # The answer names local users (which one a claim value matches, staff or not):
            # only for an admin who may see the users anyway.
            form.add_error(
                None, _("A dry run of a redemption names local users: it needs the permission to view users.")
            )
    elif form.is_valid():
        result = delegation_result(form.try_delegation(), form.cleaned_data["actor"])
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "form": form,
        "result": result,
        "media": MEDIA,
        "title": _("Try a delegation"),
    }
    return TemplateResponse(request, "delegation_idp/admin/try_delegation.html", context)
