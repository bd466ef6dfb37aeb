"""OAuth 2.0 Token Exchange, https://www.rfc-editor.org/rfc/rfc8693

The grant (:class:`TokenExchangeGrant`), its token-type identifiers and its
errors, plugged into django-oauth-toolkit through ``OAUTH2_SERVER_CLASS``
(:class:`delegation_idp.provider.server.DelegationServer`).
"""

from delegation_idp.rfc8693.errors import InvalidTargetError
from delegation_idp.rfc8693.grant import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    REFRESH_TOKEN_TYPE,
    TokenExchangeGrant,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "GRANT_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "REFRESH_TOKEN_TYPE",
    "InvalidTargetError",
    "TokenExchangeGrant",
]
