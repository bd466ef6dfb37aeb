"""Claims of the Token Status List draft (draft-ietf-oauth-status-list).

* the referenced token's ``status`` claim (section 6.2):
  ``{"status_list": {"idx": <non-negative integer>, "uri": "<the list's URI>"}}``;
* the Status List Token in JWT form (section 5.1): header ``typ`` ``statuslist+jwt``;
  claims ``sub`` (the list's URI, equal to the referenced token's ``uri``), ``iat``,
  ``exp``, ``ttl`` (seconds a consumer may cache it) and ``status_list``
  ``{"bits": 1, "lst": "..."}`` (section 4.2), served as ``application/statuslist+jwt``
  (sections 8.1 and 8.2);
* the aggregation endpoint's metadata name (section 9.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from delegation_idp.statuslist.bits import BITS, StatusListError

__all__ = [
    "AGGREGATION_METADATA",
    "MAX_TTL",
    "MEDIA_TYPE",
    "TYP",
    "Reference",
    "list_token_claims",
    "reference_claim",
    "reference_of",
    "validate_list_claims",
]

TYP = "statuslist+jwt"
MEDIA_TYPE = "application/statuslist+jwt"
#: The other form the draft defines (section 5.2); this implementation does not offer it.
CWT_MEDIA_TYPE = "application/statuslist+cwt"
AGGREGATION_METADATA = "status_list_aggregation_endpoint"
#: Longest ``ttl`` honoured by a consumer (section 11.5: check it is within reasonable bounds).
MAX_TTL = 24 * 3600
MAX_URI_LENGTH = 2048


@dataclass(frozen=True)
class Reference:
    """Where a token's status is: index ``idx`` of the list at ``uri``."""

    idx: int
    uri: str


def reference_claim(idx: int, uri: str) -> dict[str, Any]:
    """The ``status`` claim of a referenced token (section 6.2)."""
    return {"status_list": {"idx": int(idx), "uri": uri}}


def _is_uri(value: Any) -> bool:
    if not isinstance(value, str) or not value or len(value) > MAX_URI_LENGTH:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("https", "http") and bool(parts.netloc) and not parts.fragment


def reference_of(claims: Mapping[str, Any]) -> Reference | None:
    """The token's status reference, None without a ``status`` claim; ``bad_reference`` for a
    ``status`` claim that is not one (section 8.3, step 1)."""
    if "status" not in claims:
        return None
    status = claims["status"]
    entry = status.get("status_list") if isinstance(status, dict) else None
    if not isinstance(entry, dict):
        raise StatusListError("bad_reference", "status carries no status_list")
    idx, uri = entry.get("idx"), entry.get("uri")
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0 or not _is_uri(uri):
        raise StatusListError("bad_reference", "status_list needs a non-negative idx and an http(s) uri")
    return Reference(idx=idx, uri=str(uri))


def list_token_claims(
    *, uri: str, issuer: str, iat: int, exp: int, ttl: int, lst: str, bits: int = 1, aggregation_uri: str = ""
) -> dict[str, Any]:
    """The claims of a Status List Token (section 5.1); ``aggregation_uri`` in the list when
    given (section 9.2)."""
    status_list: dict[str, Any] = {"bits": bits, "lst": lst}
    if aggregation_uri:
        status_list["aggregation_uri"] = aggregation_uri
    return {"iss": issuer, "sub": uri, "iat": iat, "exp": exp, "ttl": ttl, "status_list": status_list}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def validate_list_claims(
    claims: Mapping[str, Any], *, uri: str, issuer: str, now: float, leeway: float
) -> tuple[int, str, float | None]:
    """Check a verified Status List Token's claims for the list at ``uri`` (sections 5.1 and
    8.3, step 4) and return ``(bits, lst, ttl)``. Codes: ``sub_mismatch`` (``sub`` is not
    ``uri``), ``expired``, ``malformed``."""
    if claims.get("sub") != uri:
        raise StatusListError("sub_mismatch", "the list's sub is not the URI the token names")
    if "iss" in claims and claims["iss"] != issuer:
        raise StatusListError("bad_iss", "the list was issued by another issuer")
    iat = _number(claims.get("iat"))
    if iat is None or iat - leeway > now:
        raise StatusListError("malformed", "iat missing or in the future")
    if "exp" in claims:
        exp = _number(claims["exp"])
        if exp is None:
            raise StatusListError("malformed", "exp is not a number")
        if exp + leeway <= now:
            raise StatusListError("expired", "the status list token expired")
    ttl: float | None = None
    if "ttl" in claims:
        ttl = _number(claims["ttl"])
        if ttl is None or ttl <= 0:
            raise StatusListError("malformed", "ttl must be a positive number")
        ttl = min(ttl, MAX_TTL)
    status_list = claims.get("status_list")
    if not isinstance(status_list, dict):
        raise StatusListError("malformed", "status_list missing")
    bits, lst = status_list.get("bits"), status_list.get("lst")
    if isinstance(bits, bool) or bits not in BITS or not isinstance(lst, str):
        raise StatusListError("malformed", "status_list needs bits (1, 2, 4 or 8) and lst")
    return int(bits), lst, ttl
