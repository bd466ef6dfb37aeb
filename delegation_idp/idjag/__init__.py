"""Identity Assertion JWT Authorization Grants (ID-JAG),
https://datatracker.ietf.org/doc/draft-ietf-oauth-identity-assertion-authz-grant/

The profile MCP's Enterprise-Managed Authorization extension relies on. Pure: the
constants of the draft and the claims of an ID-JAG, no I/O.

* Leg 1, at the enterprise identity provider: an RFC 8693 token exchange with
  ``requested_token_type`` :data:`TOKEN_TYPE` mints an ID-JAG (:func:`~.claims.issued_claims`,
  signed by :mod:`delegation_idp.rfc8693.issue` with ``typ`` :data:`TYP`), addressed to a
  registered external authorization server (``Party.AUTHORIZATION_SERVER``).
* Leg 2, at the resource authorization server: the RFC 7523 ``jwt-bearer`` grant
  (:mod:`delegation_idp.rfc7523`) redeems an ID-JAG of a trusted issuer, after the draft's
  checks here (:func:`~.claims.assertion_refusal`, :func:`~.claims.redeemed_resources`,
  :func:`~.claims.granted_scope`).
"""

from delegation_idp.idjag.claims import (
    GRANT_PROFILE,
    TOKEN_TYPE,
    TYP,
    asserted_resources,
    assertion_refusal,
    granted_scope,
    issued_claims,
    redeemed_resources,
    target_refusal,
)

__all__ = [
    "GRANT_PROFILE",
    "TOKEN_TYPE",
    "TYP",
    "asserted_resources",
    "assertion_refusal",
    "granted_scope",
    "issued_claims",
    "redeemed_resources",
    "target_refusal",
]
