"""The two authentication schemes a resource server speaks: ``Bearer`` (RFC 6750) and
``DPoP`` (RFC 9449 section 7), shared by the Django REST framework class and the MCP
middleware.

* :func:`read_authorization` reads an ``Authorization`` header into :class:`Credentials`
  (the scheme and the token), None for another scheme;
* :func:`challenge` formats a ``WWW-Authenticate`` challenge; :func:`dpop_challenge` the
  ``DPoP`` one, whose ``algs`` lists the proof algorithms accepted (section 7.1). A
  service that accepts both schemes sends both challenges where no token, or a bearer
  token, was refused (section 7.2), and the ``DPoP`` one alone where a DPoP-bound token
  or its proof was.

No Django here, nor the SDK: both callers build on these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from delegation_idp.resource_server.validation import TokenError

__all__ = ["BEARER", "DPOP", "Credentials", "challenge", "dpop_challenge", "quote", "read_authorization"]

BEARER = "bearer"
DPOP = "dpop"
# RFC 7235 section 2.1 token68, the syntax of both schemes' credentials.
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")


@dataclass(frozen=True)
class Credentials:
    """The token an ``Authorization`` header carries, and its scheme (``bearer``, ``dpop``)."""

    scheme: str
    token: str = ""

    def __repr__(self) -> str:  # never the token
        return f"Credentials(scheme={self.scheme!r})"


def read_authorization(header: bytes | str) -> Credentials | None:
    """The credentials of an ``Authorization`` header value: None for a scheme other than
    ``Bearer`` and ``DPoP`` (another authentication may know it; schemes are compared
    without case, RFC 7235 section 2.1). A header of either scheme without exactly one
    token68 raises :class:`TokenError` (``malformed``)."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in (BEARER, DPOP):
        return None
    token = value.strip()
    if not _TOKEN68.fullmatch(token) or not token.isascii():
        raise TokenError("malformed", "The Authorization header is malformed.")
    return Credentials(scheme, token)


def quote(value: str) -> str:
    """An RFC 7230 quoted-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(scheme: str, params: Iterable[tuple[str, str | None]]) -> str:
    """``<scheme> name="value", ...``, parameters whose value is None left out."""
    members = [f"{name}={quote(value)}" for name, value in params if value]
    return f"{scheme} {', '.join(members)}" if members else scheme


def dpop_challenge(
    algorithms: Iterable[str],
    error: str | None = None,
    description: str | None = None,
    *,
    scope: Iterable[str] | None = None,
    resource_metadata: str | None = None,
) -> str:
    """``DPoP error=..., error_description=..., scope=..., algs="ES256 ...",
    resource_metadata=...`` (RFC 9449 section 7.1; RFC 9728 section 5.1). No error code when
    no token was sent."""
    return challenge(
        "DPoP",
        [
            ("error", error),
            ("error_description", description if error else None),
            ("scope", " ".join(scope) if scope else None),
            ("algs", " ".join(algorithms)),
            ("resource_metadata", resource_metadata),
        ],
    )
