"""The party admin's own pages: the one-time client secret page (after registering a party, and
after reissuing its secret), the confirmation before a reissue, and what the change page shows
above its form (the party's rules in precedence order, a warning when it has none).

A secret is reissued only by a POST that confirms it, by a user who may change the party,
through :func:`delegation_idp.provider.agents.reissue_secret` (as ``manage.py reissue_secret``
does); the new secret is on the response page only (``Cache-Control: no-store``), never in a
log or a message.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from delegation_idp.admin.display import MEDIA
from delegation_idp.admin.rules import rule_rows
from delegation_idp.models import DelegationRule, Party
from delegation_idp.provider import agents

__all__ = ["change_context", "has_secret", "reissue_confirmation", "reissue_secret_view", "secret_page"]

ACTING_KINDS = (Party.AGENT, Party.MCP_SERVER)


def has_secret(party: Party) -> bool:
    """Whether the party's client has a secret this app may reissue."""
    application = party.application
    return (
        application is not None
        and application.client_type == application.CLIENT_CONFIDENTIAL
        and getattr(application, "algorithm", "") != application.HS256_ALGORITHM
    )


def secret_page(
    model_admin: ModelAdmin,
    request: HttpRequest,
    party: Party,
    client_id: str,
    secret: str,
    *,
    reissued: bool,
) -> HttpResponse:
    """The only page that shows a client secret, once."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "party": party,
        "client_id": client_id,
        "client_secret": secret,
        "reissued": reissued,
        "media": MEDIA,
        "change_url": reverse("admin:delegation_idp_party_change", args=[party.pk]),
        "title": (_("New client secret for %(name)s") if reissued else _("Client secret for %(name)s"))
        % {"name": party.name},
    }
    response = TemplateResponse(request, "delegation_idp/admin/party_secret.html", context)
    # The page is the only copy of the secret: never cache it anywhere.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def reissue_confirmation(model_admin: ModelAdmin, request: HttpRequest, party: Party) -> HttpResponse:
    """The page that asks before a reissue; its form POSTs the confirmation."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "party": party,
        "original": party,
        "client_id": party.application.client_id if party.application else "",
        "media": MEDIA,
        "title": _("Reissue the client secret of %(name)s?") % {"name": party.name},
    }
    return TemplateResponse(request, "delegation_idp/admin/party_reissue_secret.html", context)


def reissue_secret_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """GET: the confirmation page. POST with ``confirm``: a new secret, shown once."""
    party = get_object_or_404(Party.objects.select_related("application"), pk=object_id)
    if not model_admin.has_change_permission(request, party):
        raise PermissionDenied
    change_url = reverse("admin:delegation_idp_party_change", args=[party.pk])
    if not has_secret(party):
        messages.error(request, _("%(name)s has no client secret to reissue.") % {"name": party.name})
        return HttpResponseRedirect(change_url)
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return reissue_confirmation(model_admin, request, party)
    try:
        registration = agents.reissue_secret(party)
    except agents.SecretNotReissued as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(change_url)
    return secret_page(
        model_admin, request, party, registration.client_id, registration.client_secret or "", reissued=True
    )


def change_context(request: HttpRequest, party: Party) -> dict[str, Any]:
    """What the change page shows above its form."""
    acting = party.kind in ACTING_KINDS
    rows = rule_rows(DelegationRule.objects.filter(actor=party)) if acting else []
    return {
        "acting": acting,
        "rule_table": rows,
        "no_rules": acting and not rows and not party.self_registered,
        "governed_by_registration": acting and party.self_registered,
        "can_reorder": request.user.has_perm("delegation_idp.change_delegationrule"),
        "can_add_rule": request.user.has_perm("delegation_idp.add_delegationrule"),
        "can_reissue": has_secret(party),
    }
