"""delegation_idp: a delegation-aware identity provider for django-oauth-toolkit.

Adds the OAuth 2.0 Token Exchange grant (RFC 8693) with nested ``act`` claims,
JWT access tokens (RFC 9068), managed signing keys, token lineage and audit.
"""

__version__ = "0.1.0"

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"

__all__ = ["TOKEN_EXCHANGE_GRANT", "__version__"]
