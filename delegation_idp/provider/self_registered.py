"""Clients that register themselves, governed: client ID metadata documents (CIMD) and
RFC 7591 dynamic client registration (DCR).

django-oauth-toolkit does the protocol: with ``CIMD_ENABLED`` it fetches a client's
metadata document (its client id is the document's https URL) with its SSRF-hardened
fetcher and stores a public application; with ``DCR_ENABLED`` it answers RFC 7591
registration. This module puts those clients under the delegation policy:

* **Admission.** A client is admitted only when an enabled
  :class:`~delegation_idp.models.RegistrationRule` matches how it registers and its host, so
  no document is fetched from, and no client registered for, a host the admins did not
  name: :class:`RegistrationRulePermission` (a CIMD permission class) and
  :func:`admits_registration` (asked by the RFC 7591 and RFC 7592 views).
* **A registered party.** Each such application becomes a :class:`~delegation_idp.models.Party`
  of kind agent, marked with how it registered (:func:`application_saved`). Its identity
  URI is the metadata document URL (CIMD: the URL is the client id, and the provider fetched
  it from that host), or an URL under this provider's issuer for DCR (the metadata's
  ``client_uri`` is the registrant's to choose, so it never names a party). An URL already
  naming another party is never taken over.
* **No broader than the rules.** Until an admin promotes it, the party's rules are the
  registration rules that match it (:func:`rules_for`), each read as a rule "directly from a
  user token" for its audiences with at most its scope; its own delegation rules do not
  apply. Editing or disabling a registration rule governs the next request everywhere
  (the registration rules are policy tables, under the version triggers).
* **Audited.** Each arrival is an audit record (event ``registration``) with the client
  id, which for CIMD is the metadata URL; the client's token requests are audited under it.
* **In the admin** it can be disabled (its tokens are revoked, like any party's) or
  promoted to a fully registered agent (:func:`promote`), which copies the rules that
  governed it into rules of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models.signals import post_save
from django.http.request import validate_host
from django.utils import timezone
from oauth2_provider.models import get_application_model

from delegation_idp import audit
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.reasons import Reason
from delegation_idp.models import DelegationRule, Party, RegistrationRule

__all__ = [
    "RegistrationRulePermission",
    "admits_registration",
    "application_saved",
    "connect",
    "hosts_of",
    "matching",
    "promote",
    "rules_for",
]

logger = logging.getLogger(__name__)


def _source(application: Any) -> str | None:
    """``Party.BY_CIMD`` or ``Party.BY_DCR`` for an application that registered itself."""
    sources = getattr(type(application), "RegistrationSource", None)
    value = getattr(application, "registration_source", None)
    if sources is None or value is None:
        return None
    if value == getattr(sources, "CIMD", object()):
        return Party.BY_CIMD
    if value == getattr(sources, "DCR", object()):
        return Party.BY_DCR
    return None


# The "host" of a client registered without any redirect URI (a machine client, RFC 7591):
# only a rule for every host (``*``) admits it.
NO_HOST = "*"


def hosts_of(via: str, client_id: str, redirect_uris: Iterable[str]) -> list[str]:
    """The hosts a registration rule must match: the metadata URL's (CIMD), or every
    redirect URI's (DCR; :data:`NO_HOST` without any). Empty when one of them has no host
    (then nothing matches)."""
    urls = [client_id] if via == Party.BY_CIMD else list(redirect_uris)
    if not urls and via == Party.BY_DCR:
        return [NO_HOST]
    hosts = [(urlsplit(url).hostname or "").lower() for url in urls]
    return hosts if hosts and all(hosts) else []


def _covers(patterns: list[str], host: str) -> bool:
    return "*" in patterns if host == NO_HOST else validate_host(host, patterns)


def matching(via: str, hosts: list[str], rules: Iterable[RegistrationRule]) -> list[RegistrationRule]:
    """The ``rules`` for clients registered through ``via`` whose hosts cover all of ``hosts``."""
    if not hosts:
        return []
    return [r for r in rules if r.via == via and all(_covers(r.host_list(), h) for h in hosts)]


def _party_hosts(party: Party, alias: str | None) -> list[str]:
    application = party.application if party.application_id is not None else None
    if application is None:
        return []
    return hosts_of(party.registration, application.client_id, str(application.redirect_uris or "").split())


def rules_for(party: Party, alias: str | None = None) -> tuple[policy.RuleView, ...]:
    """The rules that govern a self-registered party: one view per registration rule that
    matches it (enabled or not: the evaluator reports a disabled one as not in effect),
    numbered ``-pk`` so they never collide with a delegation rule's id."""
    rules = RegistrationRule.objects.using(alias).prefetch_related("audiences")
    found = matching(party.registration, _party_hosts(party, alias), rules)
    return tuple(
        policy.RuleView(
            id=-rule.pk,
            actor=party.uri,
            audiences=frozenset(p.uri for p in rule.audiences.all()),
            max_scope=policy.scope_set(rule.max_scope),
            direct_from_user=True,
            enabled=rule.enabled,
        )
        for rule in found
    )


def admits_registration(redirect_uris: list[str], *, client_id: str = "") -> bool:
    """Whether an enabled registration rule admits an RFC 7591 registration (or an RFC 7592
    update of ``client_id``) with these redirect URIs; a refusal is audited."""
    hosts = hosts_of(Party.BY_DCR, "", redirect_uris)
    if matching(Party.BY_DCR, hosts, RegistrationRule.objects.filter(enabled=True)):
        return True
    _refused(Party.BY_DCR, client_id, Reason.REDIRECT_URI_NOT_PERMITTED)
    return False


def _refused(via: str, client_id: str, reason: Reason = Reason.REGISTRATION_NOT_PERMITTED) -> None:
    """The audit record of a refused registration (event ``registration``)."""
    audit.write_refusal(
        event="registration",
        grant_type=via,
        client_id=str(client_id or "")[:255],
        error=reason.error,
        reason=reason,
    )


class RegistrationRulePermission:
    """Admit a client ID metadata document only where an enabled registration rule names its
    host, before any document is fetched (``CIMD_REGISTRATION_PERMISSION_CLASSES``). A URL
    that another party's identity URI or resource prefix covers, or that covers one, is never
    admitted (the client would own that party's resources). A refusal is audited.

    RFC 7591 registration needs no permission class for this: the registration views check
    the rules themselves (:func:`admits_registration`), so as a DCR permission class this one
    admits every request."""

    def has_permission(self, request: Any, client_id: str | None = None) -> bool:
        if client_id is None:
            return True  # RFC 7591: the registration view asks the rules
        hosts = hosts_of(Party.BY_CIMD, client_id, ())
        if not _overlaps(client_id) and matching(
            Party.BY_CIMD, hosts, RegistrationRule.objects.filter(enabled=True)
        ):
            return True
        _refused(Party.BY_CIMD, client_id)
        return False


def _overlaps(client_id: str) -> bool:
    """Whether ``client_id`` collides with another party: equal to, under, or above its
    identity URI or one of its resource prefixes (the party of this very client aside)."""
    others = Party.objects.exclude(application__client_id=client_id).only("uri", "resource_prefixes")
    url = _normal(client_id)
    for party in others:
        for prefix in map(_normal, (party.uri, *party.prefixes())):
            if policy.resource_under(url, prefix) or policy.resource_under(prefix, url):
                return True
    return False


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _normal(url: str) -> str:
    """``url`` with its scheme and host in lower case and a default port left out, so that two
    spellings of one URL compare equal (RFC 3986 section 6.2.2 and 6.2.3)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return parts._replace(scheme=scheme, netloc=netloc).geturl()


def _identity_uri(via: str, client_id: str) -> str:
    if via == Party.BY_CIMD:
        return client_id
    return f"{str(idp_settings.ISSUER).rstrip('/')}/clients/{client_id}"


def application_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """``post_save`` of the application model: a self-registered application becomes a party
    (once; a metadata refresh keeps the party and its standing)."""
    via = _source(instance)
    if via is None or kwargs.get("raw"):
        return
    linked = Party.objects.filter(application=instance)
    if linked.exists():
        # Its redirect URIs (DCR) decide which registration rules govern it: a change is a
        # policy change, seen by every process's policy cache (the party table's triggers).
        linked.filter(registration=via).update(updated=timezone.now())
        return
    uri = _identity_uri(via, instance.client_id)
    if len(uri) > (Party._meta.get_field("uri").max_length or 255) or Party.objects.filter(uri=uri).exists():
        # Never take over another party's identity URI: the client stays a plain application
        # (its tokens are its own, addressed to its client id).
        logger.warning("self-registered client %s names an existing party; not linked", instance.client_id)
        return
    with transaction.atomic():
        Party.objects.create(
            uri=uri,
            name=(str(getattr(instance, "name", "") or "") or uri)[:200],
            kind=Party.AGENT,
            application=instance,
            registration=via,
        )
        record = audit.Attempt(event="registration", grant_type=via, client_id=instance.client_id[:255])
        record.grant()
        idp_settings.AUDIT_WRITER(**record.fields())


def connect() -> None:
    """Connect :func:`application_saved` (from the app's ``ready()``)."""
    post_save.connect(
        application_saved, sender=get_application_model(), dispatch_uid="delegation_idp.self_registered"
    )


@transaction.atomic
def promote(party: Party) -> list[DelegationRule]:
    """Make a self-registered party a fully registered agent: the registration rules that
    govern it now become delegation rules of its own (so nothing it may do changes at the
    moment of promotion), and from then on only its own rules apply."""
    if not party.self_registered:
        return []
    governing = [r for r in rules_for(party) if r.enabled]
    created = []
    audiences = {p.uri: p for p in Party.objects.filter(uri__in={u for r in governing for u in r.audiences})}
    for view in governing:
        rule = DelegationRule.objects.create(
            actor=party,
            max_scope=" ".join(sorted(view.max_scope)),
            allow_direct_from_user=True,
            description=f"from registration rule {-view.id} at promotion",
        )
        rule.audiences.set([audiences[u] for u in view.audiences if u in audiences])
        created.append(rule)
    party.registration = Party.BY_ADMIN
    party.save(update_fields=["registration", "updated"])
    return created
