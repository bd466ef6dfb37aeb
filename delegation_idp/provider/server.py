"""The oauthlib server for django-oauth-toolkit's ``OAUTH2_SERVER_CLASS`` setting."""

from __future__ import annotations

from typing import Any

from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2 import Server
from oauthlib.oauth2.rfc6749.tokens import random_token_generator
from oauthlib.openid.connect.core.grant_types import AuthorizationCodeGrant as OpenIDAuthorizationCodeGrant
from oauthlib.openid.connect.core.grant_types import RefreshTokenGrant as OpenIDRefreshTokenGrant
from oauthlib.openid.connect.core.grant_types.dispatchers import (
    AuthorizationCodeGrantDispatcher,
    AuthorizationTokenGrantDispatcher,
)

from delegation_idp.ciba import GRANT_TYPE as CIBA_GRANT
from delegation_idp.ciba.grant import CibaGrant
from delegation_idp.rfc7523 import GRANT_TYPE as JWT_BEARER_GRANT
from delegation_idp.rfc7523 import JwtBearerGrant
from delegation_idp.rfc8693 import GRANT_TYPE, TokenExchangeGrant

__all__ = ["DEVICE_CODE_GRANT", "DelegationServer"]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DelegationServer(Server):
    """oauthlib's all-grants server plus the RFC 8693 token-exchange grant, the RFC 7523
    ``jwt-bearer`` grant (for ID-JAGs) and OpenID CIBA's grant (for delegations the user
    approves, :mod:`delegation_idp.ciba`), without the device-code grant.

    Every keyword argument django-oauth-toolkit passes (``pre_token`` and the
    other device-flow hooks among them) reaches the parent server unchanged;
    the new grant gets only the validator. Refresh tokens stay opaque even
    when access tokens are JWTs. A subclass swaps the grant through
    ``token_exchange_grant_class`` (and ``jwt_bearer_grant_class``, ``ciba_grant_class``).

    With django-oauth-toolkit's ``OIDC_ENABLED``, OpenID Connect's authorization-code flow
    too (OpenID Connect Core section 3.1): a request whose scope holds ``openid`` gets an ID
    token with its tokens, from the code and on refresh, through oauthlib's OpenID grants
    (the ones django-oauth-toolkit's default OpenID server uses). The implicit and hybrid
    flows are not offered (RFC 9700 section 2.1.2: no token from the authorization endpoint).
    """

    token_exchange_grant_class: type[TokenExchangeGrant] = TokenExchangeGrant
    jwt_bearer_grant_class: type[JwtBearerGrant] = JwtBearerGrant
    ciba_grant_class: type[CibaGrant] = CibaGrant

    def __init__(
        self,
        request_validator: Any,
        token_expires_in: Any = None,
        token_generator: Any = None,
        refresh_token_generator: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            request_validator,
            token_expires_in,
            token_generator,
            refresh_token_generator or random_token_generator,
            *args,
            **kwargs,
        )
        self.token_exchange_grant = self.token_exchange_grant_class(request_validator)
        self.grant_types[GRANT_TYPE] = self.token_exchange_grant
        self.jwt_bearer_grant = self.jwt_bearer_grant_class(request_validator)
        self.grant_types[JWT_BEARER_GRANT] = self.jwt_bearer_grant
        # OpenID CIBA (poll mode): the backchannel authentication request and its poll.
        self.ciba_grant = self.ciba_grant_class(request_validator)
        self.grant_types[CIBA_GRANT] = self.ciba_grant
        # The device flow (RFC 8628) is not offered: its authorization endpoint would be one
        # more place where clients authenticate outside this app's guard (delegation_idp.urls
        # does not mount it), so its grant is unsupported here too.
        self.grant_types.pop(DEVICE_CODE_GRANT, None)
        if oauth2_settings.OIDC_ENABLED:
            self._add_openid_connect(request_validator)

    def _add_openid_connect(self, request_validator: Any) -> None:
        """The authorization-code flow and refresh of OpenID Connect, dispatched on ``openid``
        in the scope as oauthlib's OpenID server does; every other request as before."""
        oidc_code = OpenIDAuthorizationCodeGrant(request_validator)
        self.openid_connect_auth = oidc_code
        self.response_types["code"] = AuthorizationCodeGrantDispatcher(
            default_grant=self.auth_grant, oidc_grant=oidc_code
        )
        self.grant_types["authorization_code"] = AuthorizationTokenGrantDispatcher(
            request_validator, default_grant=self.auth_grant, oidc_grant=oidc_code
        )
        # Adds an ID token to a refresh only when the refreshed scope holds openid.
        self.refresh_grant = OpenIDRefreshTokenGrant(request_validator)
        self.grant_types["refresh_token"] = self.refresh_grant
