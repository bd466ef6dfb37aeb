"""The token-exchange request, parsed (RFC 8693 section 2.1): pure, no I/O.

An ID-JAG request (``requested_token_type`` ``urn:ietf:params:oauth:token-type:id-jag``) is
one too, with exactly one ``audience`` (the draft's section 4.3). Its subject may also be an
ID token or a refresh token of this provider's (the draft's section 4.3); those are exchanged
for an ID-JAG only.

:func:`parse` turns the form's ``(name, value)`` pairs into an
:class:`ExchangeRequest` or raises the catalogue's refusal: the required
parameters, the empty and repeated ones (RFC 6749 section 3.2; only ``audience``
and ``resource`` may repeat), the token types, and the shape of every
``resource`` (an absolute URI without a fragment, RFC 8707 section 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.core.errors import InvalidRequest, InvalidTarget
from delegation_idp.core.reasons import Reason
from delegation_idp.idjag import TOKEN_TYPE as ID_JAG_TOKEN_TYPE

__all__ = [
    "ACCEPTED_SUBJECT_TYPES",
    "ACCESS_TOKEN_TYPE",
    "GRANT_TYPE",
    "ID_JAG_SUBJECT_TYPES",
    "ID_JAG_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "ISSUABLE_TYPES",
    "JWT_TOKEN_TYPE",
    "REFRESH_TOKEN_TYPE",
    "ExchangeRequest",
    "absolute_without_fragment",
    "parse",
]

GRANT_TYPE = TOKEN_EXCHANGE_GRANT
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"

# Token types whose value may be one of this provider's JWT access tokens.
ACCEPTED_SUBJECT_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})
# Subject token types accepted for an ID-JAG only (the draft's section 4.3): one of this
# provider's OpenID Connect ID tokens or refresh tokens. The actor token stays an access token.
ID_JAG_SUBJECT_TYPES = frozenset({ID_TOKEN_TYPE, REFRESH_TOKEN_TYPE})
# An ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant section 4.3) too: a token exchange
# addressed to an external authorization server, which redeems it with RFC 7523.
ISSUABLE_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, ID_JAG_TOKEN_TYPE})
# Section 2.1: parameters that may repeat; RFC 6749 section 3.2: no other may.
REPEATABLE = frozenset({"audience", "resource"})
# Parameters of the exchange that may not be sent empty.
NON_EMPTY = frozenset(
    {
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "audience",
        "resource",
        "scope",
        "requested_token_type",
    }
)


@dataclass(frozen=True)
class ExchangeRequest:
    """A well-formed token-exchange request: what the client asked for, nothing decided yet."""

    subject_token: str
    subject_token_type: str
    audiences: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str | None = None
    actor_token: str | None = None
    actor_token_type: str | None = None
    requested_token_type: str = ACCESS_TOKEN_TYPE

    @property
    def requested_targets(self) -> tuple[str, ...]:
        """Every ``audience`` then every ``resource``, as sent (for the audit record)."""
        return (*self.audiences, *self.resources)


def parse(form: Iterable[tuple[str, str]]) -> ExchangeRequest:
    """The request in ``form`` (every value of every body parameter, in order)."""
    seen: dict[str, str] = {}
    audiences: list[str] = []
    resources: list[str] = []
    for name, value in form:
        if name in seen and name not in REPEATABLE:
            raise InvalidRequest(Reason.REPEATED_PARAMETER, f"The {name} parameter is repeated.")
        if value == "" and name in NON_EMPTY:
            raise InvalidRequest(Reason.EMPTY_PARAMETER, f"The {name} parameter is empty.")
        seen[name] = value
        if name == "audience":
            audiences.append(value)
        elif name == "resource":
            resources.append(value)
    for name in ("subject_token", "subject_token_type"):
        if not seen.get(name):
            raise InvalidRequest(Reason.MISSING_PARAMETER, f"Missing {name} parameter.")
    subject_type = seen["subject_token_type"]
    if subject_type not in ACCEPTED_SUBJECT_TYPES and subject_type not in ID_JAG_SUBJECT_TYPES:
        raise InvalidRequest(Reason.UNSUPPORTED_TOKEN_TYPE, "This subject_token_type is not accepted.")
    actor_token, actor_type = seen.get("actor_token"), seen.get("actor_token_type")
    if bool(actor_token) != bool(actor_type):
        raise InvalidRequest(Reason.MISSING_PARAMETER, "actor_token and actor_token_type go together.")
    if actor_token and actor_type not in ACCEPTED_SUBJECT_TYPES:
        raise InvalidRequest(Reason.UNSUPPORTED_TOKEN_TYPE, "This actor_token_type is not accepted.")
    requested = seen.get("requested_token_type") or ACCESS_TOKEN_TYPE
    if requested not in ISSUABLE_TYPES:
        raise InvalidRequest(Reason.UNSUPPORTED_TOKEN_TYPE, "This requested_token_type cannot be issued.")
    if subject_type in ID_JAG_SUBJECT_TYPES and requested != ID_JAG_TOKEN_TYPE:
        raise InvalidRequest(Reason.ID_JAG_ONLY_SUBJECT_TYPE)
    if not audiences and not resources:
        raise InvalidRequest(Reason.MISSING_PARAMETER, "An audience or resource parameter is required.")
    if requested == ID_JAG_TOKEN_TYPE and len(audiences) != 1:
        # The draft's section 4.3: audience is the one issuer of the resource authorization server.
        raise InvalidRequest(Reason.ID_JAG_ONE_AUDIENCE)
    for resource in resources:
        if not absolute_without_fragment(resource):
            raise InvalidTarget(Reason.RESOURCE_MALFORMED)
    return ExchangeRequest(
        subject_token=seen["subject_token"],
        subject_token_type=subject_type,
        audiences=tuple(audiences),
        resources=tuple(resources),
        scope=seen.get("scope"),
        actor_token=actor_token,
        actor_token_type=actor_type,
        requested_token_type=requested,
    )


def absolute_without_fragment(resource: str) -> bool:
    """RFC 8707 section 2: an absolute URI without a fragment."""
    try:
        parts = urlsplit(resource)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    return bool(parts.scheme and parts.netloc) and not parts.fragment and "#" not in resource
