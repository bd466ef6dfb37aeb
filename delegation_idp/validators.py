"""The request validator for django-oauth-toolkit's ``OAUTH2_VALIDATOR_CLASS`` setting."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

from . import lineage
from .rfc8693 import GRANT_TYPE

__all__ = ["DelegationValidator"]


class DelegationValidator(OAuth2Validator):
    """django-oauth-toolkit's validator, aware of the token-exchange grant and of lineage."""

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        # The stock method asserts the grant is in its own mapping (an
        # AssertionError, a 500, for ours): answer for the exchange grant here.
        if grant_type == GRANT_TYPE:
            return self.client_may_exchange(client)
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)

    @staticmethod
    def client_may_exchange(client: Any) -> bool:
        """A confidential client linked to a registered agent or MCP server."""
        from .models import Party

        if client is None or client.client_type != client.CLIENT_CONFIDENTIAL:
            return False
        try:
            party = client.delegation_party
        except Party.DoesNotExist:
            return False
        return party.kind in (Party.AGENT, Party.MCP_SERVER)

    def _create_access_token(
        self, expires: Any, request: Any, token: Any, source_refresh_token: Any = None
    ) -> Any:
        access_token = super()._create_access_token(
            expires, request, token, source_refresh_token=source_refresh_token
        )
        issued = getattr(request, "delegation_issued", None)
        if issued is not None and issued.claims.get("jti"):
            lineage.record_issued(request, issued, access_token, request.grant_type or "")
        return access_token
