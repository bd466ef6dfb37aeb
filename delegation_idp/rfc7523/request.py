"""The ``jwt-bearer`` token request, parsed (RFC 7523 section 2.1): pure, no I/O.

Required ``assertion`` (one JWT); optional ``scope`` and RFC 8707 ``resource`` (which may
repeat). No parameter may repeat otherwise (RFC 6749 section 3.2) or be sent empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from delegation_idp.core.errors import InvalidRequest, InvalidTarget
from delegation_idp.core.reasons import Reason
from delegation_idp.rfc8693.request import absolute_without_fragment

__all__ = ["GRANT_TYPE", "BearerRequest", "parse"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
NON_EMPTY = frozenset({"assertion", "scope", "resource"})


@dataclass(frozen=True)
class BearerRequest:
    """A well-formed ``jwt-bearer`` request: the assertion and what the client asked for."""

    assertion: str
    scope: str | None = None
    resources: tuple[str, ...] = ()


def parse(form: Iterable[tuple[str, str]]) -> BearerRequest:
    """The request in ``form`` (every value of every body parameter, in order)."""
    seen: dict[str, str] = {}
    resources: list[str] = []
    for name, value in form:
        if name in seen and name != "resource":
            raise InvalidRequest(Reason.REPEATED_PARAMETER, f"The {name} parameter is repeated.")
        if value == "" and name in NON_EMPTY:
            raise InvalidRequest(Reason.EMPTY_PARAMETER, f"The {name} parameter is empty.")
        seen[name] = value
        if name == "resource":
            resources.append(value)
    if not seen.get("assertion"):
        raise InvalidRequest(Reason.MISSING_PARAMETER, "Missing assertion parameter.")
    for resource in resources:
        if not absolute_without_fragment(resource):
            raise InvalidTarget(Reason.RESOURCE_MALFORMED)
    return BearerRequest(assertion=seen["assertion"], scope=seen.get("scope"), resources=tuple(resources))
