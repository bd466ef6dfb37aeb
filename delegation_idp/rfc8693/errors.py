"""Errors of RFC 8693 section 2.2.2 that oauthlib does not define."""

from oauthlib.oauth2.rfc6749.errors import OAuth2Error


class InvalidTargetError(OAuth2Error):
    """The authorization server is unwilling or unable to issue a token for any
    target service indicated by the ``resource`` or ``audience`` parameters
    (RFC 8693 section 2.2.2, RFC 8707 section 2)."""

    error = "invalid_target"
    status_code = 400
