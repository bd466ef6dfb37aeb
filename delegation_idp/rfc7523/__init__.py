"""JWT Profile for OAuth 2.0 Authorization Grants, https://www.rfc-editor.org/rfc/rfc7523
(section 2.1, the ``jwt-bearer`` grant), for redeeming ID-JAGs
(draft-ietf-oauth-identity-assertion-authz-grant section 5) of the trusted issuers an admin
registered. Client authentication by a JWT (RFC 7523 section 2.2, ``private_key_jwt``) is
:mod:`delegation_idp.provider.client_auth`.

One redemption, module by module:

* :mod:`.request`: the form, parsed into a :class:`~.request.BearerRequest` (pure);
* :mod:`.redeem`: the assertion verified against its trusted issuer's keys, the draft's
  checks, replay, the local user, then the access token signed and stored with its lineage
  row and audit record;
* :mod:`.grant`: :class:`JwtBearerGrant`, the oauthlib glue, registered by
  :class:`delegation_idp.provider.server.DelegationServer`.
"""

from delegation_idp.rfc7523.grant import JwtBearerGrant
from delegation_idp.rfc7523.request import GRANT_TYPE, BearerRequest

__all__ = ["GRANT_TYPE", "BearerRequest", "JwtBearerGrant"]
