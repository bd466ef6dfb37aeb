"""OAuth 2.0 Token Exchange, https://www.rfc-editor.org/rfc/rfc8693

One exchange, module by module:

* :mod:`.request`: the form, parsed into an :class:`~.request.ExchangeRequest` (pure);
* :mod:`.exchange`: the subject and actor tokens verified, lineage matched, the policy
  asked: an :class:`~delegation_idp.core.types.Exchange`, or a refusal;
* :mod:`.issue`: the token signed, its lineage row and audit record stored in one
  transaction: an :class:`~delegation_idp.core.types.Issuance`;
* :mod:`.grant`: :class:`TokenExchangeGrant`, the oauthlib glue, plugged into
  django-oauth-toolkit through ``OAUTH2_SERVER_CLASS``
  (:class:`delegation_idp.provider.server.DelegationServer`).
"""

from delegation_idp.core.errors import InvalidTarget
from delegation_idp.rfc8693.grant import TokenExchangeGrant
from delegation_idp.rfc8693.request import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    REFRESH_TOKEN_TYPE,
    ExchangeRequest,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "GRANT_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "REFRESH_TOKEN_TYPE",
    "ExchangeRequest",
    "InvalidTarget",
    "TokenExchangeGrant",
]
