"""The guard of every endpoint where clients authenticate: token, introspection, revocation.

In this order: the per-address limit (before the body is read), POST only, no query
string, the body-size limit, the endpoint's own form checks (:meth:`ClientAuthGuard.screen`),
the credentials' one identity (:func:`read_credentials`), the per-client limit and the
failure lockout keyed on that identity and the source address; then the endpoint's
answer, and after it the challenge of a 401, the failure count, ``no-store`` and one
audit record. Every refusal is a :class:`delegation_idp.core.errors.OAuthError` for a
reason of the catalogue, answered as RFC 6749 JSON by
:func:`delegation_idp.provider.resilience.error_response`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse

from delegation_idp import audit
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import InvalidClient, InvalidRequest, OAuthError, ServerError, SlowDown
from delegation_idp.core.reasons import Reason
from delegation_idp.provider import client_auth, throttling
from delegation_idp.provider.resilience import NO_STORE, PASS_THROUGH, error_response, retry_after

__all__ = [
    "AUTHENTICATION_METHODS",
    "SENSITIVE_PARAMETERS",
    "ClientAuthGuard",
    "Credentials",
    "read_credentials",
]

logger = logging.getLogger(__name__)

# Never in a log, an error report or an audit record.
SENSITIVE_PARAMETERS = (
    "subject_token",
    "actor_token",
    "client_assertion",
    "client_secret",
    "password",
    "code",
    "code_verifier",
    "refresh_token",
    "token",
    "auth_req_id",  # OpenID CIBA: with the client's credentials, it redeems an approval
)

AUTHENTICATION_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
# Refusals of the credentials themselves, counted like a failed authentication: a guess
# wrapped in a malformed request must not escape the lockout.
COUNTED_REFUSALS = frozenset({Reason.CLIENT_ID_MISMATCH, Reason.MULTIPLE_CLIENT_AUTHENTICATION})


# A percent sign not followed by two hex digits.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _form_is_clean(body: bytes) -> bool:
    """Strict ``application/x-www-form-urlencoded``: valid percent-escapes, UTF-8, no NUL
    (no OAuth parameter may hold one, and PostgreSQL text cannot store one).

    Checked on the whole body at once: the separators ``&`` and ``=`` are ASCII, so every
    name and value decodes as UTF-8 exactly when the decoded body does."""
    if not body:
        return True
    if _BAD_ESCAPE.search(body):
        return False
    decoded = unquote_to_bytes(body.replace(b"+", b" "))
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in decoded


@dataclass(frozen=True)
class Credentials:
    """The client a request's credentials name (before they are checked), and how."""

    method: str  # one of AUTHENTICATION_METHODS
    client_id: str
    # Why these credentials are refused whatever they prove, if they are.
    conflict: Reason | None = None

    def refuse_conflict(self) -> None:
        if self.conflict is not None:
            raise (
                InvalidRequest(self.conflict)
                if self.conflict.error == "invalid_request"
                else InvalidClient(self.conflict)
            )


def read_credentials(request: HttpRequest) -> Credentials:
    """The one client identity of the request, from its credentials (RFC 6749 section 2.3):
    the HTTP Basic user-id; else a client assertion's (unverified, size-checked) ``sub``;
    else the body ``client_id``. A body ``client_id`` that names another client is a
    ``conflict``, refused after the lockout check (RFC 6749 section 2.3.1, RFC 7521 section
    4.2; an assertion that does not authenticate is ``invalid_client``, RFC 7521 section
    4.2.1): the lockout and the audit record name the client whose credentials were
    presented, never a value chosen beside them. Called after :meth:`ClientAuthGuard.screen`
    has parsed the form."""
    basic = client_auth.parse_basic(request.META.get("HTTP_AUTHORIZATION", ""))
    if basic is False:
        raise InvalidClient(Reason.BAD_BASIC_CREDENTIALS)
    form = request.POST
    body_id = form.get("client_id")
    if isinstance(basic, tuple):
        method, client_id = "client_secret_basic", basic[0]
    elif "client_assertion" in form:
        claimed = client_auth.unverified_client_id(form.get("client_assertion", ""))
        method, client_id = "private_key_jwt", claimed or body_id or ""
    elif "client_secret" in form:
        method, client_id = "client_secret_post", body_id or ""
    else:
        method, client_id = "none", body_id or ""
    conflict: Reason | None = None
    if isinstance(basic, tuple) and ("client_secret" in form or "client_assertion" in form):
        conflict = Reason.MULTIPLE_CLIENT_AUTHENTICATION
    elif body_id is not None and client_id and body_id != client_id:
        conflict = (
            Reason.ASSERTION_CLIENT_MISMATCH if method == "private_key_jwt" else Reason.CLIENT_ID_MISMATCH
        )
    return Credentials(method, client_id, conflict)


def _throttled(wait: int) -> SlowDown:
    """429 with ``Retry-After`` (RFC 6585 section 4, RFC 9110 section 10.2.3)."""
    return SlowDown(Reason.THROTTLED, headers={"Retry-After": str(wait)})


def _oversized(request: HttpRequest) -> Reason | None:
    """Why a body may not be read (over ``MAX_REQUEST_BYTES``, or a bad length), decided
    before it is read; None when it may be."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if 0 <= length <= idp_settings.MAX_REQUEST_BYTES:
        return None
    return Reason.REQUEST_TOO_LARGE if length > 0 else Reason.BAD_CONTENT_LENGTH


def _error_code(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.content).get("error", "")) or "server_error"
    except (ValueError, AttributeError):
        return "server_error"


class ClientAuthGuard:
    """What the token, introspection and revocation endpoints share (see the module
    docstring). Subclasses answer in :meth:`answer` and may add form checks in :meth:`screen`."""

    event = "token"
    realm = "token"
    #: Body formats read here. RFC 6749, 7662 and 7009 name form encoding; introspection and
    #: revocation also read Django's multipart forms, as django-oauth-toolkit's views did.
    content_types: tuple[str, ...] = ("application/x-www-form-urlencoded", "multipart/form-data")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        address = throttling.client_address(request.META)
        with audit.attempt(event=self.event, client_ip=address) as record:
            credentials: Credentials | None = None
            try:
                limited = throttling.check_address(address)
                if limited is not None:
                    raise _throttled(limited)
                self.admit(request)
                self.screen(request, record)
                credentials = read_credentials(request)
                record.client_id = credentials.client_id[:255]
                limited = throttling.check_client(credentials.client_id, address)
                if limited is not None:
                    raise _throttled(limited)
                credentials.refuse_conflict()
                response = self.answer_safely(request, record, credentials, *args, **kwargs)
            except OAuthError as refused:
                record.refuse(refused.reason)
                response = error_response(refused)
            self.conclude(response, record)
        self.count_failure(response, record, credentials, address)
        return response

    def admit(self, request: HttpRequest) -> None:
        """POST only, no query string, and the body-size limit checked before the body is read."""
        if request.method != "POST":
            raise InvalidRequest(Reason.METHOD_NOT_ALLOWED, headers={"Allow": "POST"})
        if request.META.get("QUERY_STRING"):
            # RFC 6749 section 3.2 and RFC 7662/7009: parameters travel in the form body. A
            # query string would carry credentials past the lockout (which reads the body)
            # and into access logs.
            raise InvalidRequest(Reason.QUERY_PARAMETERS)
        too_large = _oversized(request)
        if too_large is not None:
            raise InvalidRequest(too_large)

    def screen(self, request: HttpRequest, record: audit.Attempt) -> None:
        """Checks of the form before any credential is read, at every endpoint: a body format
        this endpoint reads, valid percent-escapes and UTF-8, and no NUL in any parameter, so
        bad bytes are the client's error and never reach the database. Endpoints add their own."""
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type not in self.content_types:
            raise InvalidRequest(Reason.BAD_CONTENT_TYPE)
        urlencoded = content_type == "application/x-www-form-urlencoded"
        if urlencoded and not _form_is_clean(request.body):  # escapes, UTF-8 and NUL, unparsed
            raise InvalidRequest(Reason.BAD_ENCODING)
        try:
            form = request.POST  # parsed once here; Django keeps it for everything after
        except SuspiciousOperation as exc:  # e.g. more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
            raise InvalidRequest(Reason.TOO_MANY_FIELDS) from exc
        # A multipart form is checked for NUL once parsed (the urlencoded body was, above).
        if not urlencoded and any("\0" in k or any("\0" in v for v in vs) for k, vs in form.lists()):
            raise InvalidRequest(Reason.BAD_ENCODING)

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        raise NotImplementedError

    def answer_safely(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        try:
            return self.answer(request, record, credentials, *args, **kwargs)
        except OAuthError:
            raise
        except PASS_THROUGH:
            raise  # storage_guard answers storage errors (503) and foreign charsets (400)
        except Exception as exc:
            # Never let an exception reach Django's error reports: their frame variables
            # include django-oauth-toolkit's and oauthlib's copies of the raw body, which
            # hold tokens, secrets and assertions. Logged without them.
            logger.exception("%s endpoint failed (grant_type=%r)", self.event, record.grant_type)
            raise ServerError(Reason.UNHANDLED_EXCEPTION) from exc

    def conclude(self, response: HttpResponse, record: audit.Attempt) -> None:
        """The audit decision, ``no-store``, JSON errors with a description, and the challenge."""
        if response.status_code != 200 and record.decision != "denied":
            record.deny(_error_code(response), record.reason)
        elif response.status_code == 200 and not record.decision:
            record.grant()
        for key, value in NO_STORE.items():
            response[key] = value
        if response.status_code == 503 and not response.has_header("Retry-After"):
            response["Retry-After"] = retry_after()  # also when django-oauth-toolkit answered it
        # oauthlib leaves Content-Type, and sometimes a description, out of its errors.
        if response.content[:1] == b"{":
            response["Content-Type"] = "application/json"
            if response.status_code != 200:
                _describe(response)
        if response.status_code == 401:
            # RFC 6749 section 5.2: the scheme the client used. oauthlib challenges as
            # Bearer, which never authenticates a client here. After body authentication
            # a 401 still needs a challenge (RFC 9110 section 15.5.2): Basic, the one
            # HTTP authentication scheme these endpoints accept.
            response["WWW-Authenticate"] = f'Basic realm="{self.realm}"'

    @staticmethod
    def count_failure(
        response: HttpResponse, record: audit.Attempt, credentials: Credentials | None, address: str | None
    ) -> None:
        """A failed authentication counts against the identity the credentials name."""
        if credentials is None or not credentials.client_id:
            return
        if response.status_code == 401 or record.reason in COUNTED_REFUSALS:
            throttling.note_auth_failure(credentials.client_id, address)


def _describe(response: HttpResponse) -> None:
    """An error django-oauth-toolkit or oauthlib answered without a description gets the
    catalogue's generic one for its code."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return
    if isinstance(body, dict) and body.get("error") and not body.get("error_description"):
        body["error_description"] = Reason.for_error(str(body["error"])).description
        response.content = json.dumps(body).encode()
