"""What every endpoint answers when the request cannot be read or the database cannot be.

One decorator, :func:`storage_guard`, over each endpoint's ``dispatch``:

* a storage error (any ``django.db.DatabaseError``: the server down or hung past its
  timeouts, SQLite's ``database is locked``) is ``503 temporarily_unavailable`` with
  ``Retry-After`` (RFC 6749 section 4.1.2.1 defines the code; RFC 7009 section 2.2.1
  gives 503 for revocation), reason ``database_error``;
* a form body in a charset other than UTF-8, or one Python does not know, is
  ``400 invalid_request``, reason ``bad_encoding`` (RFC 6749 appendix B: forms are UTF-8).

Both as RFC 6749 JSON with ``Cache-Control: no-store``, never Django's HTML pages. Each
refusal is audited; when the audit table is down too, :mod:`delegation_idp.audit` logs
it to ``delegation_idp.audit.fallback`` instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from django.core.exceptions import BadRequest
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import parse_header_parameters
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

from delegation_idp import audit
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import InvalidRequest, OAuthError, TemporarilyUnavailable
from delegation_idp.core.reasons import Reason
from delegation_idp.provider import throttling

logger = logging.getLogger(__name__)

__all__ = [
    "NO_STORE",
    "PASS_THROUGH",
    "error_response",
    "for_oauthlib",
    "oauth_error",
    "storage_guard",
    "unavailable",
]

FORM = "application/x-www-form-urlencoded"

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

#: Exceptions an endpoint must let through to :func:`storage_guard` (not turn into a 500).
PASS_THROUGH: tuple[type[BaseException], ...] = (DatabaseError, BadRequest, UnicodeDecodeError, LookupError)


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    """An RFC 6749 section 5.2 error response: JSON, never cached."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    for key, value in {**NO_STORE, **(headers or {})}.items():
        response[key] = value
    return response


def retry_after() -> str:
    return str(max(1, int(idp_settings.UNAVAILABLE_RETRY_AFTER)))


def error_response(exc: OAuthError) -> HttpResponse:
    """The response of a refusal: every endpoint of this app answers its errors here. A
    503 always says when to retry (``Retry-After``)."""
    headers = dict(exc.headers)
    if exc.status == 503:
        headers.setdefault("Retry-After", retry_after())
    return oauth_error(exc.status, exc.error, exc.description, headers)


class HookRefusal(CustomOAuth2Error):
    """A refusal of the catalogue raised inside django-oauth-toolkit's own flows (its token and
    authorization endpoints answer oauthlib's errors only, as JSON or as an error redirect):
    the same error, description, status and headers."""

    def __init__(self, refused: OAuthError) -> None:
        super().__init__(error=refused.error, description=refused.description, status_code=refused.status)
        self.reason = refused.reason
        self.extra_headers = dict(refused.headers)

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, **self.extra_headers}


def for_oauthlib(refused: OAuthError) -> HookRefusal:
    """``refused`` as oauthlib's error, its reason on the running audit record."""
    record = audit.current()
    if record is not None:
        record.refuse(refused.reason)
    return HookRefusal(refused)


def unavailable(reason: Reason = Reason.DATABASE_ERROR) -> HttpResponse:
    """``503 temporarily_unavailable`` with ``Retry-After``."""
    return error_response(TemporarilyUnavailable(reason))


def _declare_charset(request: HttpRequest) -> None:
    """Make a form's declared charset stick, so reading ``request.POST`` refuses it.

    Django ignores a ``charset`` it cannot look up (``latin-9x``) and decodes the form as
    UTF-8 anyway; a known non-UTF-8 one (``utf-16``) it refuses with ``BadRequest``. Setting
    the declared value on the request makes both cases refuse, and only when the form is read.
    """
    content_type, params = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    charset = params.get("charset")
    if content_type.lower() == FORM and charset is not None and charset.lower() != "utf-8":
        request.encoding = charset


def _is_bad_encoding(exc: BaseException) -> bool:
    # codecs raise plain LookupError for an unknown charset; KeyError and IndexError are bugs.
    return isinstance(exc, BadRequest | UnicodeDecodeError) or type(exc) is LookupError


def storage_guard(event: str, *, audit_every_request: bool = False) -> Callable[..., Any]:
    """Decorate an endpoint's ``dispatch`` (``method_decorator(storage_guard("token"), "dispatch")``).

    ``event`` names the audit records of the refusals made here. With
    ``audit_every_request`` the endpoint keeps one :func:`delegation_idp.audit.attempt` per
    request and decides it itself; the guard opens it, so a refusal here is that attempt's.
    Otherwise each refusal here writes its own record.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            _declare_charset(request)
            address = throttling.client_address(request.META)
            scope = audit.attempt(event=event, client_ip=address) if audit_every_request else nullcontext()
            with scope as record:
                try:
                    return view(request, *args, **kwargs)
                except PASS_THROUGH as exc:
                    refused: OAuthError
                    if isinstance(exc, DatabaseError):
                        # The exception's text may quote SQL parameters: only its type is logged.
                        logger.warning("%s endpoint: database unavailable (%s)", event, type(exc).__name__)
                        refused = TemporarilyUnavailable(Reason.DATABASE_ERROR)
                    elif _is_bad_encoding(exc):
                        refused = InvalidRequest(Reason.BAD_ENCODING, "The body must be UTF-8 form encoding.")
                    else:
                        raise
                    if record is not None:
                        record.refuse(refused.reason)
                    else:
                        audit.write_refusal(
                            event=event,
                            error=refused.error,
                            reason=refused.reason,
                            client_id="",  # the JWKS and the metadata take no credentials
                            client_ip=address,
                        )
                    return error_response(refused)

        return guarded

    return decorate
