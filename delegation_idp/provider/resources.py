"""RFC 8707 resource indicators on django-oauth-toolkit's own grants, under the policy.

Which audiences a token of the authorization code, refresh token or client credentials
grant may name:

* a registered party's **own** resources (its identity URI and resource prefixes): always;
* another party's resource, at the authorization endpoint and for the tokens of that
  grant: only when **a user** authorizes it and a delegation rule lets the client address
  that party *directly from a user token*, with every requested scope within the rule's
  (:func:`authorize`). This is how a stock MCP client obtains a token for an MCP server:
  ``aud`` is the resource, ``client_id`` the client, and there is no ``act`` (the user is
  using the client directly). Passing work from one agent to another stays token
  exchange's job;
* an application that is not a registered party: the resources of the parties whose
  client allow-list names it (``Party.clients``).

The authorization endpoint asks :func:`authorize` before the consent page and again when
the code is issued; the token generator asks it once more when the token is signed, so a
rule withdrawn in between takes effect (a refresh asks again too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from delegation_idp.core import policy
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.models import Party
from delegation_idp.provider import policy_store

__all__ = ["Authorized", "authorize", "explain_direct", "owners_of"]


@dataclass(frozen=True)
class Authorized:
    """The audiences a token may name (the resources as requested) and the registered parties
    they belong to (the token's lineage lists them, so disabling one revokes the token)."""

    audience: tuple[str, ...]
    owners: tuple[str, ...]


def owners_of(resources: Sequence[str]) -> list[tuple[str, str]]:
    """``(resource, the display name of the registered party it belongs to)`` for the consent
    page; resources that belong to no party are left out."""
    owners = policy_store.current().resource_owners()
    found = {r: policy.resource_owner(r, owners) for r in resources}
    names = dict(Party.objects.filter(uri__in={u for u in found.values() if u}).values_list("uri", "name"))
    return [(r, names[u]) for r, u in found.items() if u in names]


def _foreign(party: Party, resources: Sequence[str], store: policy_store.PolicyStore) -> tuple[str, ...]:
    """The resources that are not ``party``'s own: each belongs to the party whose identity URI
    or prefix covers it most closely (:func:`~delegation_idp.core.policy.resource_owner`), so a
    URL under the party's URI that another party's longer prefix covers is that party's."""
    owners = store.resource_owners()
    return tuple(r for r in resources if policy.resource_owner(r, owners) != party.uri)


def explain_direct(
    party: Party,
    resources: Sequence[str],
    *,
    user: Any,
    scopes: Sequence[str],
    store: policy_store.PolicyStore | None = None,
) -> tuple[policy.Explanation, policy.ExchangeContext, tuple[str, ...]]:
    """The policy's answer for ``party`` addressing ``resources`` directly from ``user``'s
    authorization, with the outcome of each of its rules (the admin's dry-run page shows
    them), the context it was decided in, and the owners of the foreign resources."""
    store = store or policy_store.current()
    foreign = _foreign(party, resources, store)
    owners = store.resource_owners()
    targets = tuple(dict.fromkeys(policy.resource_owner(r, owners) or r for r in foreign))
    wanted = frozenset(scopes)
    ctx, rules, limits = policy_store.load(
        party,
        (),
        targets,
        # The user grants what the client asks for, and no more than the rule allows.
        subject_scope=wanted,
        requested_scope=wanted,
        user=user,
        from_user=True,
        now=timezone.now(),
        store=store,
    )
    return policy.explain(ctx, rules, limits), ctx, targets


def authorize(
    party: Party | None,
    resources: Sequence[str],
    *,
    user: Any,
    scopes: Sequence[str],
    allowed_for_client: Any = None,
    consented: Callable[[], Sequence[str]] | None = None,
) -> Authorized:
    """The audiences of a token for ``resources``, or the catalogue's refusal (raised as
    :class:`~delegation_idp.core.errors.OAuthError`).

    ``party`` is the client's registered party (None for another application, then
    ``allowed_for_client`` is its primary key, for the ``Party.clients`` allow-list);
    ``user`` the resource owner (None for client credentials). At the token endpoint,
    ``consented`` gives the resources the user saw on the consent page (the authorization
    code's or refresh token's): another party's resource must be one of them, whatever a
    rule would allow, since the user did not authorize any other.
    """
    if not resources:
        return Authorized((), ())
    resources = tuple(dict.fromkeys(resources))
    store = policy_store.current()
    if party is None:
        allowed = store.client_audiences(allowed_for_client)
        denied = policy.client_resources(resources, (p for uri, ps in allowed for p in (uri, *ps)))
        if denied is not None:
            raise refusal(denied)
        owners = (policy.resource_owner(r, allowed) for r in resources)
        return Authorized(resources, tuple(dict.fromkeys(o for o in owners if o is not None)))
    foreign = _foreign(party, resources, store)
    if not foreign:
        return Authorized(resources, (party.uri,))
    if getattr(user, "pk", None) is None:
        # Without a user nobody authorized the client to reach another party directly.
        raise refusal(Reason.RESOURCE_NOT_OWN)
    if consented is not None and not set(foreign) <= set(consented()):
        raise refusal(Reason.RESOURCE_NOT_CONSENTED)
    explanation, _ctx, targets = explain_direct(party, resources, user=user, scopes=scopes, store=store)
    decision = explanation.decision
    if not decision.allowed:
        raise refusal(decision.reason)
    return Authorized(resources, (party.uri, *targets))
