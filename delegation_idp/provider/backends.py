"""The request backend for django-oauth-toolkit's ``OAUTH2_BACKEND_CLASS`` setting."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_backends import OAuthLibCore

__all__ = ["DelegationOAuthLibCore"]


class DelegationOAuthLibCore(OAuthLibCore):
    """Hands oauthlib every value of every body parameter.

    RFC 8693 section 2.1 lets ``audience`` and ``resource`` repeat; RFC 6749
    section 3.2 forbids repeating anything else. The stock backend keeps only
    the last value, which hides both: with all values, oauthlib's
    ``duplicate_params`` and the grants can tell.
    """

    def extract_body(self, request: Any) -> list[tuple[str, str]]:
        return [(key, value) for key, values in request.POST.lists() for value in values]
