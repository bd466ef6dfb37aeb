"""The backchannel authentication request and the CIBA token request, parsed: pure, no I/O.

A backchannel authentication request (OpenID CIBA Core section 7.1) here carries the token
exchange's parameters (RFC 8693 section 2.1: ``subject_token``, ``subject_token_type``,
``audience``, ``resource``, ``scope``, ``requested_token_type``, the actor token), parsed by
:func:`delegation_idp.rfc8693.request.parse`, and CIBA's own:

- the subject token is the hint that names the user: ``login_hint_token`` and
  ``id_token_hint`` are refused, and a ``login_hint``, if sent, must be the subject
  token's ``sub`` (checked once the token is verified);
- ``binding_message``: at most 100 printable characters, shown to the user;
- ``authorization_details`` (RFC 9396 section 2): a JSON array of objects, each with a string
  ``type``, size-checked before parsing, duplicate members refused;
- ``requested_expiry``: a positive integer of seconds, which can only shorten the wait;
- ``user_code`` is not supported.

A CIBA token request (section 10.1) carries one ``auth_req_id``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from delegation_idp.core.errors import (
    InvalidAuthorizationDetails,
    InvalidBindingMessage,
    InvalidGrant,
    InvalidRequest,
)
from delegation_idp.core.reasons import Reason
from delegation_idp.rfc8693.request import ExchangeRequest
from delegation_idp.rfc8693.request import parse as parse_exchange

__all__ = ["BackchannelRequest", "parse_authorization_details", "parse_backchannel", "parse_poll"]

MAX_BINDING_MESSAGE = 100
MAX_EXPIRY = 24 * 3600
# CIBA parameters that may not repeat or be empty (the exchange's are checked by its parser).
_SINGLE = ("login_hint", "binding_message", "authorization_details", "requested_expiry", "auth_req_id")


@dataclass(frozen=True)
class BackchannelRequest:
    """A well-formed backchannel authentication request: the exchange it asks the user to
    approve, and what the user is shown."""

    exchange: ExchangeRequest
    binding_message: str = ""
    authorization_details: tuple[Mapping[str, Any], ...] = ()
    login_hint: str | None = None
    requested_expiry: int | None = None


def _single(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for name, value in form:
        if name not in _SINGLE:
            continue
        if name in seen:
            raise InvalidRequest(Reason.REPEATED_PARAMETER, f"The {name} parameter is repeated.")
        if value == "":
            raise InvalidRequest(Reason.EMPTY_PARAMETER, f"The {name} parameter is empty.")
        seen[name] = value
    return seen


def parse_backchannel(
    form: Iterable[tuple[str, str]], *, detail_types: Iterable[str] = (), max_detail_bytes: int = 4096
) -> BackchannelRequest:
    """The request in ``form`` (every value of every body parameter, in order);
    ``detail_types`` are the accepted ``authorization_details`` types (empty: any)."""
    pairs = list(form)
    names = {name for name, _ in pairs}
    if names & {"login_hint_token", "id_token_hint"}:
        raise InvalidRequest(Reason.HINT_NOT_SUPPORTED)
    if "user_code" in names:
        raise InvalidRequest(Reason.USER_CODE_NOT_SUPPORTED)
    seen = _single(pairs)
    exchange = parse_exchange(pairs)
    message = seen.get("binding_message", "")
    if len(message) > MAX_BINDING_MESSAGE or not message.isprintable():
        raise InvalidBindingMessage(Reason.BINDING_MESSAGE_INVALID)
    details: tuple[Mapping[str, Any], ...] = ()
    if "authorization_details" in seen:
        details = parse_authorization_details(
            seen["authorization_details"], types=frozenset(detail_types), max_bytes=max_detail_bytes
        )
    expiry: int | None = None
    if "requested_expiry" in seen:
        raw = seen["requested_expiry"]
        # The length first: int() of thousands of digits raises (CPython's conversion limit).
        if len(raw) > 10 or not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= MAX_EXPIRY:
            raise InvalidRequest(
                Reason.INVALID_REQUEST, "requested_expiry must be a positive number of seconds."
            )
        expiry = int(raw)
    return BackchannelRequest(
        exchange=exchange,
        binding_message=message,
        authorization_details=details,
        login_hint=seen.get("login_hint"),
        requested_expiry=expiry,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("duplicate member")
    return dict(pairs)


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent; ``1e400`` overflows to inf, which is no JSON."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity (RFC 8259 section 6)


def parse_authorization_details(
    raw: str, *, types: frozenset[str] = frozenset(), max_bytes: int = 4096
) -> tuple[Mapping[str, Any], ...]:
    """RFC 9396 section 2: a non-empty JSON array of objects, each with a string ``type`` (one
    of ``types`` when given), no member twice, no NaN nor Infinity (RFC 8259), at most
    ``max_bytes`` encoded and at most four levels deep; refused as
    ``invalid_authorization_details`` (section 5)."""
    if len(raw.encode("utf-8")) > max_bytes:
        raise InvalidAuthorizationDetails(Reason.AUTHORIZATION_DETAILS_INVALID)
    try:
        value = json.loads(
            raw, object_pairs_hook=_no_duplicates, parse_float=_finite, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as exc:
        raise InvalidAuthorizationDetails(Reason.AUTHORIZATION_DETAILS_INVALID) from exc
    if not isinstance(value, list) or not value or not all(_detail_ok(d, types) for d in value):
        raise InvalidAuthorizationDetails(Reason.AUTHORIZATION_DETAILS_INVALID)
    return tuple(value)


def _detail_ok(detail: Any, types: frozenset[str]) -> bool:
    if not isinstance(detail, dict) or not _shallow(detail, 4):
        return False
    kind = detail.get("type")
    return isinstance(kind, str) and bool(kind) and (not types or kind in types)


def _shallow(value: Any, depth: int) -> bool:
    if isinstance(value, dict):
        return depth > 0 and all(_shallow(v, depth - 1) for v in value.values())
    if isinstance(value, list):
        return depth > 0 and all(_shallow(v, depth - 1) for v in value)
    return True


def parse_poll(form: Iterable[tuple[str, str]]) -> str:
    """The ``auth_req_id`` of a CIBA token request (section 10.1)."""
    seen = _single(list(form))
    auth_req_id = seen.get("auth_req_id")
    if not auth_req_id:
        raise InvalidRequest(Reason.MISSING_PARAMETER, "Missing auth_req_id parameter.")
    if len(auth_req_id) > 256:  # no auth_req_id of ours is this long: never looked up
        raise InvalidGrant(Reason.AUTH_REQ_ID_UNKNOWN)
    return auth_req_id
