"""The decisions of an ID-JAG redemption that need no cryptography (RFC 7523 section 3,
draft-ietf-oauth-identity-assertion-authz-grant section 5.1), read from the stored
registrations.

:func:`delegation_idp.rfc7523.redeem.verify` asks them around the signature, ``exp`` and
``jti`` checks, and the admin's dry run of a redemption
(:func:`delegation_idp.provider.dry_run.try_redemption`, also ``manage.py explain --redeem``)
asks the same ones in the same order on the claims an admin typed:

1. :func:`trusted_issuer`: the ``iss`` names an enabled trusted issuer;
2. :func:`client_refusal`: the client is one of those that may redeem its ID-JAGs;
3. :func:`grant`: the resources, their owners and the issuer's ``services``; the scope; the
   client's party may obtain tokens, bound by DPoP if it must be;
4. :func:`find_user`: the local user, reading only; :func:`local_user` (the real redemption)
   creates the just-in-time one :func:`find_user` says is to be created.

Every refusal is a :class:`~delegation_idp.core.reasons.Reason` of the catalogue, returned
(never raised) so that the dry run can show it and the grant raise it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldError
from django.db import IntegrityError, router, transaction

from delegation_idp.core import policy
from delegation_idp.core.reasons import Reason
from delegation_idp.idjag import granted_scope, redeemed_resources
from delegation_idp.models import ExternalIdentity, TrustedIssuer, party_of
from delegation_idp.provider import policy_store
from delegation_idp.rfc7523.request import BearerRequest

__all__ = [
    "Grant",
    "UserMatch",
    "client_refusal",
    "find_user",
    "grant",
    "just_in_time_username",
    "local_user",
    "trusted_issuer",
]

logger = logging.getLogger(__name__)


def trusted_issuer(iss: Any) -> TrustedIssuer | None:
    """The enabled trusted issuer whose ``issuer`` is exactly ``iss``, or None."""
    if not isinstance(iss, str) or len(iss) > 255:
        return None
    return TrustedIssuer.objects.filter(issuer=iss, enabled=True).first()


def client_refusal(trusted: TrustedIssuer, client: Any) -> Reason | None:
    """Whether ``client`` is one of the clients that may redeem the issuer's ID-JAGs
    (``ID_JAG_CLIENT_NOT_ALLOWED``)."""
    return None if trusted.clients.filter(pk=client.pk).exists() else Reason.ID_JAG_CLIENT_NOT_ALLOWED


@dataclass(frozen=True)
class Grant:
    """What step 5 and the client's registration allow: the resources the token is addressed
    to, their registered owners, the scope."""

    audience: tuple[str, ...]
    owners: tuple[str, ...]
    scope: str
    #: the client's registered party ("" for an application that is none)
    party: str = ""


def grant(
    trusted: TrustedIssuer, claims: Mapping[str, Any], request: BearerRequest, client: Any, *, jkt: str
) -> Grant | Reason:
    """Step 5 and the client's own standing, in order, reading only: the resources (RFC 8707,
    :func:`~delegation_idp.idjag.redeemed_resources`), each one a registered party's that the
    issuer's ``services`` include; the scope (:func:`~delegation_idp.idjag.granted_scope`);
    the client's party may obtain tokens, bound by DPoP if it must be. The :class:`Grant`, or
    the catalogue's reason for refusing."""
    resources = redeemed_resources(claims, request.resources)
    if isinstance(resources, Reason):
        return resources
    owners_table = policy_store.current().resource_owners()
    owners = [policy.resource_owner(r, owners_table) for r in resources]
    if any(owner is None for owner in owners):
        return Reason.TARGET_UNKNOWN
    reachable = set(trusted.services.values_list("uri", flat=True))
    if not {o for o in owners if o is not None} <= reachable:
        # An issuer is trusted for the services an admin chose, not for every one here.
        return Reason.ID_JAG_RESOURCE_NOT_ALLOWED
    scope = granted_scope(request.scope, claims.get("scope"))
    if isinstance(scope, Reason):
        return scope
    party = party_of(client)
    view = party.as_view() if party is not None else None
    refused = policy.may_obtain_tokens(view) or policy.binding_refusal(view, bound=bool(jkt))
    if refused is not None:
        return refused
    return Grant(
        audience=resources,
        owners=tuple(dict.fromkeys(o for o in owners if o is not None)),
        scope=" ".join(sorted(scope)),
        party=party.uri if party is not None else "",
    )


@dataclass(frozen=True)
class UserMatch:
    """Step 7 read only: the local user the ID-JAG's subject is, or that one would be created
    just in time for it, or why there is none (in an admin's words, never a client's)."""

    user: Any = None
    #: just in time, no user linked to (issuer, ``sub``) yet: one would be created
    create: bool = False
    #: just in time, the user is the one linked to (issuer, ``sub``)
    linked: bool = False
    why: str = ""
    #: how loudly the real redemption logs a refusal (a misconfiguration, a staff user named)
    log_level: int = logging.INFO

    @property
    def refused(self) -> bool:
        return self.user is None and not self.create


def find_user(trusted: TrustedIssuer, claims: Mapping[str, Any]) -> UserMatch:
    """Step 7, reading only: the active local user the ID-JAG's subject is.

    * "existing user by a claim": the user whose ``user_field`` (the username field when
      blank; a unique field) equals the claim ``subject_claim``, a non-empty string; never a
      staff user or superuser, whom another organisation's assertion must not sign in;
    * "just in time": the user linked to (issuer, ``sub``); without one, a user is to be
      created for that pair (:func:`local_user` creates it), never matched to an existing
      user by any value the issuer chose."""
    User = get_user_model()
    if trusted.user_mapping == TrustedIssuer.JUST_IN_TIME:
        subject = str(claims["sub"])
        link = ExternalIdentity.objects.select_related("user").filter(issuer=trusted, subject=subject).first()
        if link is None:
            return UserMatch(create=True)
        if not link.user.is_active:
            return UserMatch(linked=True, why="the user linked to this issuer and sub is inactive")
        return UserMatch(user=link.user, linked=True)
    value = claims.get(trusted.subject_claim)
    if not isinstance(value, str) or not value:
        return UserMatch(why=f"the claim {trusted.subject_claim} is missing or not a non-empty string")
    field = trusted.user_field or User.USERNAME_FIELD
    try:
        matches = list(User.objects.filter(**{field: value})[:2])
    except FieldError:
        return UserMatch(why=f"the user model has no field {field}", log_level=logging.ERROR)
    if len(matches) != 1:
        # None, or ambiguous: never guess.
        return UserMatch(why=f"no user's {field} equals the claim" if not matches else "two users match")
    if not matches[0].is_active:
        return UserMatch(why="the matching user is inactive")
    if getattr(matches[0], "is_staff", False) or getattr(matches[0], "is_superuser", False):
        # Another organisation's assertion never signs in a local administrator.
        return UserMatch(why="the matching user is staff or a superuser", log_level=logging.WARNING)
    return UserMatch(user=matches[0])


def local_user(trusted: TrustedIssuer, claims: Mapping[str, Any]) -> Any:
    """Step 7: the active local user the ID-JAG's subject is (:func:`find_user`), created
    just in time with an unusable password and a username derived from (issuer, ``sub``) on
    first use; or None."""
    match = find_user(trusted, claims)
    if match.create:
        return _create_just_in_time(trusted, str(claims["sub"]))
    if match.user is None:
        # Never the claim's value: the why names fields, not what the issuer sent.
        logger.log(match.log_level, "trusted ID-JAG issuer %s: no local user, %s", trusted.issuer, match.why)
    return match.user


def just_in_time_username(trusted: TrustedIssuer, subject: str) -> str:
    """The username of the user created just in time for (issuer, ``sub``): derived from the
    pair, never a value the issuer chose."""
    return "id-jag-" + hashlib.sha256(f"{trusted.issuer}|{subject}".encode()).hexdigest()[:32]


def _create_just_in_time(trusted: TrustedIssuer, subject: str) -> Any:
    User = get_user_model()
    try:
        with transaction.atomic(using=router.db_for_write(ExternalIdentity)):
            user = User(**{User.USERNAME_FIELD: just_in_time_username(trusted, subject)})
            user.set_unusable_password()
            user.save()
            ExternalIdentity.objects.create(issuer=trusted, subject=subject, user=user)
    except IntegrityError:
        # Another process linked the pair first: its user is the one.
        link = ExternalIdentity.objects.select_related("user").filter(issuer=trusted, subject=subject).first()
        return link.user if link is not None and link.user.is_active else None
    logger.info("created a local user just in time for a subject of trusted issuer %s", trusted.issuer)
    return user
