"""The oauthlib server for django-oauth-toolkit's ``OAUTH2_SERVER_CLASS`` setting."""

from __future__ import annotations

from typing import Any

from oauthlib.oauth2 import Server
from oauthlib.oauth2.rfc6749.tokens import random_token_generator

from .claims import expires_in_for
from .rfc8693 import GRANT_TYPE, TokenExchangeGrant

__all__ = ["DelegationServer"]


class DelegationServer(Server):
    """oauthlib's all-grants server plus the RFC 8693 token-exchange grant.

    Every keyword argument django-oauth-toolkit passes (``pre_token`` and the
    other device-flow hooks among them) reaches the parent server unchanged;
    the new grant gets only the validator. Refresh tokens stay opaque even
    when access tokens are JWTs.
    """

    def __init__(
        self,
        request_validator: Any,
        token_expires_in: Any = None,
        token_generator: Any = None,
        refresh_token_generator: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        default_lifetime = token_expires_in

        def expires_in(request: Any) -> int:
            base = default_lifetime(request) if callable(default_lifetime) else (default_lifetime or 3600)
            return expires_in_for(request, int(base))

        super().__init__(
            request_validator,
            expires_in,
            token_generator,
            refresh_token_generator or random_token_generator,
            *args,
            **kwargs,
        )
        self.token_exchange_grant = TokenExchangeGrant(request_validator)
        self.grant_types[GRANT_TYPE] = self.token_exchange_grant
