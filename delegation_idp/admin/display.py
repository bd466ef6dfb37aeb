"""How the admin pages show parties, statuses and decisions: the conventions every page of
``delegation_idp.admin`` follows (and the pages of later features too).

* a party is shown by its name, then its identity URI in a quieter line, linked to its page
  (:func:`party_link`); a client id that names no registered party is shown as it is;
* names for a page's rows are looked up once per page (:class:`PartyNames`), never per row;
* a status or a decision is a word with a symbol, coloured by ``admin.css`` (:func:`status`):
  colour is never the only carrier of meaning;
* the stylesheet is ``delegation_idp/admin.css`` (:data:`MEDIA`), built on Django admin's own
  CSS variables, so its dark mode and theme toggle apply; no front-end build step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from delegation_idp.models import Party

__all__ = ["MEDIA", "STATUSES", "PartyNames", "party_link", "status"]

#: The stylesheet of every delegation_idp admin page (a ModelAdmin's ``Media.css``).
MEDIA = forms.Media(css={"all": ["delegation_idp/admin.css"]})

#: word and symbol of each status or decision
STATUSES: dict[str, tuple[Any, str]] = {
    "active": (_("active"), "●"),
    "expired": (_("expired"), "○"),
    "revoked": (_("revoked"), "✕"),
    "allowed": (_("allowed"), "✓"),
    # allowed by the policy, issued once the user approves (OpenID CIBA)
    "approval": (_("allowed after the user's approval"), "✓…"),
    "refused": (_("refused"), "✕"),
    "pending": (_("pending"), "…"),
    "warning": (_("warning"), "!"),
}


def status(value: str) -> SafeString:
    """``value`` (a key of :data:`STATUSES`) as a badge: symbol, word, colour."""
    word, symbol = STATUSES.get(value, (value, "?"))
    return format_html('<span class="idp-status idp-status-{}">{} {}</span>', value, symbol, word)


def party_link(party: Party | None, fallback: str = "") -> SafeString:
    """The party's name, linked to its admin page, and its URI below; ``fallback`` (a client id,
    say) as plain text when there is no party; "-" when there is neither."""
    if party is None:
        return format_html('<span class="idp-mono">{}</span>', fallback) if fallback else format_html("-")
    try:
        url = reverse("admin:delegation_idp_party_change", args=[party.pk])
    except NoReverseMatch:
        url = ""
    name = format_html("<strong>{}</strong>", party.name or party.uri)
    if url:
        name = format_html('<a href="{}">{}</a>', url, name)
    return format_html(
        '<span class="idp-party">{}</span><br><span class="idp-uri">{}</span>', name, party.uri
    )


class PartyNames:
    """The parties behind a page's client ids and URIs, found with one query."""

    def __init__(self, *, client_ids: Iterable[str] = (), uris: Iterable[str] = ()) -> None:
        client_ids, uris = {c for c in client_ids if c}, {u for u in uris if u}
        self.by_client_id: dict[str, Party] = {}
        self.by_uri: dict[str, Party] = {}
        if not client_ids and not uris:
            return
        query = Q(uri__in=uris) | Q(application__client_id__in=client_ids)
        for party in Party.objects.filter(query).select_related("application"):
            self.by_uri[party.uri] = party
            if party.application is not None:
                self.by_client_id[party.application.client_id] = party

    def client(self, client_id: str) -> SafeString:
        """The party a client id belongs to, linked; the client id when it is no party's."""
        return party_link(self.by_client_id.get(client_id), client_id)

    def uri(self, uri: str) -> SafeString:
        """The party of an identity URI, linked; the URI when it is no party's."""
        return party_link(self.by_uri.get(uri), uri)


def party_name(party: Party | None, fallback: str = "") -> SafeString:
    """The compact form of :func:`party_link`, for chains and audiences inside a line: the
    party's name, linked, its URI in the ``title``; ``fallback`` as plain text without a party."""
    if party is None:
        return (
            format_html('<span class="idp-mono">{}</span>', fallback) if fallback else format_html("{}", "-")
        )
    try:
        url = reverse("admin:delegation_idp_party_change", args=[party.pk])
    except NoReverseMatch:
        return format_html('<span class="idp-party" title="{}">{}</span>', party.uri, party.name or party.uri)
    return format_html(
        '<a class="idp-party" href="{}" title="{}">{}</a>', url, party.uri, party.name or party.uri
    )


def party_chain(
    names: PartyNames, uris: Iterable[str], *, compact: bool = True, sep: str = " ← "
) -> SafeString:
    """An actor chain of identity URIs (newest actor first) by party names: one line joined by
    ``sep`` (``compact``, each URI in its name's ``title``; ", " for audiences), or a list of each
    name and URI."""
    from django.utils.html import format_html_join

    uris = list(uris)
    if not uris:
        return format_html("{}", "-")
    if compact:
        parts = ((party_name(names.by_uri.get(u), u),) for u in uris)
        return format_html('<span class="idp-chain">{}</span>', format_html_join(sep, "{}", parts))
    items = ((names.uri(u),) for u in uris)
    return format_html('<ol class="idp-chain-list">{}</ol>', format_html_join("", "<li>{}</li>", items))
