"""delegation_idp: a delegation-aware identity provider for django-oauth-toolkit.

Adds the OAuth 2.0 Token Exchange grant (RFC 8693) with nested ``act`` claims,
JWT access tokens (RFC 9068), managed signing keys, token lineage and audit.
"""

__version__ = "0.1.0"

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"

# The ``sub`` of every token without a resource owner (client credentials, and any token
# whose lineage row has no user) is this prefix followed by the client id (RFC 9068
# section 2.2 lets ``sub`` be any identifier of the client). No user subject may start
# with it, so no client can ever mint a token that reads as a user's.
CLIENT_SUBJECT_PREFIX = "urn:delegation-idp:client:"


def client_subject(client_id: str) -> str:
    """The ``sub`` of a token that a client holds for itself."""
    return CLIENT_SUBJECT_PREFIX + client_id


def is_client_subject(subject: object) -> bool:
    """Whether ``subject`` lies in the namespace reserved for clients."""
    return isinstance(subject, str) and subject.startswith(CLIENT_SUBJECT_PREFIX)


__all__ = [
    "CLIENT_SUBJECT_PREFIX",
    "TOKEN_EXCHANGE_GRANT",
    "__version__",
    "client_subject",
    "is_client_subject",
]
