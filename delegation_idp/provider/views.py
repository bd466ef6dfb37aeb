"""HTTP endpoints: the hardened token endpoint, RFC 8414 metadata, JWKS, RFC 7662 introspection,
RFC 7009 revocation. Each answers a storage error or a foreign charset as RFC 6749 JSON
(:func:`delegation_idp.provider.resilience.storage_guard`)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode, urlsplit, urlunsplit

from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider.compat import login_not_required
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.models import get_access_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import AuthorizationView as DOTAuthorizationView
from oauth2_provider.views import RevokeTokenView as DOTRevokeTokenView
from oauth2_provider.views import TokenView as DOTTokenView
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from delegation_idp import audit, jose
from delegation_idp.conf import idp_settings
from delegation_idp.models import TokenLineage
from delegation_idp.provider import client_auth, keys, throttling
from delegation_idp.provider.keys import keyset
from delegation_idp.provider.resilience import NO_STORE, PASS_THROUGH, oauth_error, storage_guard
from delegation_idp.provider.server import DEVICE_CODE_GRANT
from delegation_idp.rfc8693 import GRANT_TYPE

logger = logging.getLogger(__name__)

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
)


def _client_ip(request: HttpRequest) -> str | None:
    return throttling.client_address(request.META)


def _form_is_clean(body: bytes) -> bool:
    """Strict ``application/x-www-form-urlencoded``: valid percent-escapes, UTF-8, no NUL
    (no OAuth parameter may hold one, and PostgreSQL text cannot store one)."""
    if not body:
        return True
    for pair in body.split(b"&"):
        for part in pair.split(b"=", 1):
            raw = part.replace(b"+", b" ")
            i = raw.find(b"%")
            while i != -1:
                escape = raw[i + 1 : i + 3]
                if len(escape) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in escape):
                    return False
                i = raw.find(b"%", i + 3)
            decoded = unquote_to_bytes(raw)
            try:
                decoded.decode("utf-8")
            except UnicodeDecodeError:
                return False
            if b"\0" in decoded:
                return False
    return True


def basic_credentials(request: HttpRequest) -> tuple[str, str] | bool | None:
    """``(client_id, secret)`` from HTTP Basic, None if absent, False if undecodable."""
    return client_auth.parse_basic(request.META.get("HTTP_AUTHORIZATION", ""))


# -- the guard of every endpoint where clients authenticate ------------------------------

AUTHENTICATION_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
# Refusals of the credentials themselves, counted like a failed authentication: a guess
# wrapped in a malformed request must not escape the lockout.
COUNTED_REFUSALS = frozenset({"client_id_mismatch", "multiple_client_authentication"})


@dataclass(frozen=True)
class Credentials:
    """The client a request's credentials name (before they are checked), and how."""

    method: str  # one of AUTHENTICATION_METHODS
    client_id: str
    # Why these credentials are refused whatever they prove (a stable reason code), if they are.
    conflict: str = ""

    def refuse_conflict(self) -> None:
        if self.conflict == "multiple_client_authentication":
            raise Refusal(
                400, "invalid_request", self.conflict, "Use exactly one client authentication method.", self
            )
        if self.conflict and self.method == "private_key_jwt":
            # RFC 7521 section 4.2.1: an assertion that does not authenticate is invalid_client.
            raise Refusal(401, "invalid_client", self.conflict, "Client authentication failed.", self)
        if self.conflict:
            raise Refusal(
                400,
                "invalid_request",
                self.conflict,
                "The client_id parameter names another client than the credentials.",
                self,
            )


class Refusal(Exception):
    """A request refused by the guard: an RFC 6749 error with a stable reason code."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        description: str,
        credentials: Credentials | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(reason)
        self.status, self.error, self.reason, self.description = status, error, reason, description
        self.credentials = credentials
        self.headers = headers or {}

    def response(self) -> HttpResponse:
        return oauth_error(self.status, self.error, self.description, self.headers)


def read_credentials(request: HttpRequest) -> Credentials:
    """The one client identity of the request, from its credentials (RFC 6749 section 2.3):
    the HTTP Basic user-id; else a client assertion's (unverified, size-checked) ``sub``;
    else the body ``client_id``. A body ``client_id`` that names another client is a
    ``conflict``, refused after the lockout check (RFC 6749 section 2.3.1, RFC 7521 section
    4.2): the lockout and the audit record name the client whose credentials were
    presented, never a value chosen beside them. Called after :meth:`ClientAuthGuard.screen`
    has parsed the form."""
    basic = basic_credentials(request)
    if basic is False:
        raise Refusal(401, "invalid_client", "bad_basic_credentials", "Client authentication failed.")
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
    conflict = ""
    if isinstance(basic, tuple) and ("client_secret" in form or "client_assertion" in form):
        conflict = "multiple_client_authentication"
    elif body_id is not None and client_id and body_id != client_id:
        conflict = "client_id_mismatch"
    return Credentials(method, client_id, conflict)


class ClientAuthGuard:
    """What the token, introspection and revocation endpoints share, in this order: the
    per-address limit (before the body is read), POST only, the body-size limit, the
    endpoint's own form checks (:meth:`screen`), the credentials' one identity
    (:func:`read_credentials`), the per-client limit and the failure lockout keyed on
    that identity and the source address; then the endpoint's answer (:meth:`answer`),
    and after it the challenge of a 401, the failure count, ``no-store`` and one audit
    record. Every refusal is RFC 6749 JSON."""

    event = "token"
    realm = "token"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        address = _client_ip(request)
        with audit.attempt(event=self.event, client_ip=address) as record:
            credentials: Credentials | None = None
            try:
                limited = throttling.check_address(address)
                if limited is not None:
                    raise _throttled_refusal(limited)
                self.admit(request)
                self.screen(request, record)
                credentials = read_credentials(request)
                record.client_id = credentials.client_id[:255]
                limited = throttling.check_client(credentials.client_id, address)
                if limited is not None:
                    raise _throttled_refusal(limited)
                credentials.refuse_conflict()
                response = self.answer_safely(request, record, credentials, *args, **kwargs)
            except Refusal as refusal:
                credentials = refusal.credentials or credentials
                if refusal.credentials is not None:
                    record.client_id = refusal.credentials.client_id[:255]
                record.deny(refusal.error, refusal.reason)
                response = refusal.response()
            self.conclude(response, record)
        self.count_failure(response, record, credentials, address)
        return response

    def admit(self, request: HttpRequest) -> None:
        """POST only, no query string, and the body-size limit checked before the body is read."""
        if request.method != "POST":
            raise Refusal(
                405,
                "invalid_request",
                "method_not_allowed",
                "This endpoint accepts POST only.",
                headers={"Allow": "POST"},
            )
        if request.META.get("QUERY_STRING"):
            # RFC 6749 section 3.2 and RFC 7662/7009: parameters travel in the form body. A
            # query string would carry credentials past the lockout (which reads the body)
            # and into access logs.
            raise Refusal(
                400,
                "invalid_request",
                "query_parameters",
                "Send the parameters in the request body, not the URL.",
            )
        too_large = _oversized(request)
        if too_large is not None:
            raise Refusal(too_large, "invalid_request", "request_too_large", "The request body is too large.")

    #: Body formats read here. RFC 6749, 7662 and 7009 name form encoding; introspection and
    #: revocation also read Django's multipart forms, as django-oauth-toolkit's views did.
    content_types: tuple[str, ...] = ("application/x-www-form-urlencoded", "multipart/form-data")

    def screen(self, request: HttpRequest, record: audit.Attempt) -> None:
        """Checks of the form before any credential is read, at every endpoint: a body format
        this endpoint reads, valid percent-escapes and UTF-8, and no NUL in any parameter, so
        bad bytes are the client's error and never reach the database. Endpoints add their own."""
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type not in self.content_types:
            raise Refusal(
                400,
                "invalid_request",
                "bad_content_type",
                "The body must be application/x-www-form-urlencoded.",
            )
        urlencoded = content_type == "application/x-www-form-urlencoded"
        if urlencoded and not _form_is_clean(request.body):  # escapes, UTF-8 and NUL, unparsed
            raise Refusal(400, "invalid_request", "bad_encoding", "The body is not valid form encoding.")
        try:
            form = request.POST  # parsed once here; Django keeps it for everything after
        except SuspiciousOperation as exc:  # e.g. more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
            raise Refusal(
                400, "invalid_request", "too_many_fields", "The request has too many parameters."
            ) from exc
        # A multipart form is checked for NUL once parsed (the urlencoded body was, above).
        if not urlencoded and any("\0" in k or any("\0" in v for v in vs) for k, vs in form.lists()):
            raise Refusal(400, "invalid_request", "bad_encoding", "The body is not valid form encoding.")

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        raise NotImplementedError

    def answer_safely(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        try:
            return self.answer(request, record, credentials, *args, **kwargs)
        except Refusal:
            raise
        except PASS_THROUGH:
            raise  # storage_guard answers storage errors (503) and foreign charsets (400)
        except Exception:
            # Never let an exception reach Django's error reports: their frame variables
            # include django-oauth-toolkit's and oauthlib's copies of the raw body, which
            # hold tokens, secrets and assertions. Logged without them.
            logger.exception("%s endpoint failed (grant_type=%r)", self.event, record.grant_type)
            record.deny("server_error", "unhandled_exception")
            return oauth_error(500, "server_error", "The server could not handle the request.")

    def conclude(self, response: HttpResponse, record: audit.Attempt) -> None:
        """The audit decision, ``no-store``, JSON errors with a description, and the challenge."""
        if response.status_code != 200 and record.decision != "denied":
            record.deny(_error_code(response), record.reason)
        elif response.status_code == 200 and not record.decision:
            record.grant()
        for key, value in NO_STORE.items():
            response[key] = value
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


@method_decorator(storage_guard("token", audit_every_request=True), name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(sensitive_post_parameters(*SENSITIVE_PARAMETERS), name="dispatch")
class TokenView(ClientAuthGuard, DOTTokenView):
    """django-oauth-toolkit's token endpoint behind input limits, throttling and audit.

    Every request, whatever its outcome, leaves one audit record; every error
    is an RFC 6749 JSON error with ``Cache-Control: no-store``.
    """

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    event = "token"
    realm = "token"
    content_types = ("application/x-www-form-urlencoded",)

    def conclude(self, response: HttpResponse, record: audit.Attempt) -> None:
        super().conclude(response, record)
        if record.grant_type == GRANT_TYPE:
            record.event = "token_exchange"

    def screen(self, request: HttpRequest, record: audit.Attempt) -> None:
        super().screen(request, record)  # parsed the form
        record.grant_type = request.POST.get("grant_type", "")[:128]
        if not record.grant_type:
            # RFC 6749 section 5.2: a missing required parameter is invalid_request
            # (oauthlib would route it to the authorization-code grant instead).
            raise Refusal(400, "invalid_request", "missing_parameter", "Missing grant_type parameter.")
        if record.grant_type == DEVICE_CODE_GRANT:
            # django-oauth-toolkit's view answers the device grant before the server's grant
            # table is consulted; the device flow is not offered here (DelegationServer).
            raise Refusal(
                400, "unsupported_grant_type", "grant_not_offered", "This grant type is not supported."
            )

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        try:
            return self._delivered(request, *args, **kwargs)
        finally:
            # django-oauth-toolkit's post() narrows this to password and client_secret.
            request.sensitive_post_parameters = SENSITIVE_PARAMETERS  # type: ignore[attr-defined]

    def create_token_response(self, request: HttpRequest) -> Any:
        # Kept, so that a 200 whose read-back fails can still be delivered (_delivered).
        self._issued = super().create_token_response(request)
        return self._issued

    def _delivered(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """django-oauth-toolkit's ``post()``. After a 200 it reads the issued token back (to send
        ``app_authorized``); if the database dies just then, the token is stored and audited,
        so it is delivered rather than lost behind an error."""
        self._issued = None
        try:
            return super().post(request, *args, **kwargs)
        except DatabaseError:
            issued = self._issued
            if issued is None or issued[3] != 200:
                raise
            logger.warning(
                "token issued but app_authorized not sent: the database failed reading it back (%s)",
                self._issued_client(request),
            )
            _url, headers, body, status = issued
            response = HttpResponse(content=body, status=status)
            for key, value in headers.items():
                response[key] = value
            return response

    @staticmethod
    def _issued_client(request: HttpRequest) -> str:
        record = audit.current()
        return f"client_id={record.client_id!r}, jti={record.jti!r}" if record else ""


@method_decorator(storage_guard("revocation_request", audit_every_request=True), name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(sensitive_post_parameters(*SENSITIVE_PARAMETERS), name="dispatch")
class RevokeTokenView(ClientAuthGuard, DOTRevokeTokenView):
    """RFC 7009 revocation: django-oauth-toolkit's endpoint behind the same guard as the
    token endpoint, so it offers no unlimited guessing of client secrets.

    An unknown or invalid token is still ``200`` (RFC 7009 section 2.2), a failed client
    authentication ``401 invalid_client``. Revoking deletes django-oauth-toolkit's row,
    whose ``post_delete`` receiver revokes the token's lineage subtree.
    """

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    event = "revocation_request"
    realm = "revocation"

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        return super().post(request, *args, **kwargs)


def _throttled_refusal(wait: int) -> Refusal:
    """429 with ``Retry-After`` (RFC 6585 section 4, RFC 9110 section 10.2.3)."""
    return Refusal(429, "slow_down", "throttled", "Too many requests.", headers={"Retry-After": str(wait)})


def _oversized(request: HttpRequest) -> int | None:
    """The status for a body over ``MAX_REQUEST_BYTES`` (413) or with a bad length (400),
    decided before it is read; None when it may be read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if 0 <= length <= idp_settings.MAX_REQUEST_BYTES:
        return None
    return 413 if length > 0 else 400


# RFC 6749 section 5.2 and RFC 8693 section 2.2.2, in plain words.
DEFAULT_DESCRIPTIONS = {
    "invalid_request": "The request is missing a parameter, repeats one, or is otherwise malformed.",
    "invalid_client": "Client authentication failed.",
    "invalid_grant": "The grant is invalid, expired or revoked.",
    "unauthorized_client": "This client may not use this grant type.",
    "unsupported_grant_type": "This grant type is not supported.",
    "invalid_scope": "The requested scope is invalid or exceeds what was granted.",
    "invalid_target": "The requested audience or resource is not permitted.",
}


def _describe(response: HttpResponse) -> None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return
    if isinstance(body, dict) and body.get("error") and not body.get("error_description"):
        body["error_description"] = DEFAULT_DESCRIPTIONS.get(body["error"], "The request was refused.")
        response.content = json.dumps(body).encode()


def _error_code(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.content).get("error", "")) or "server_error"
    except (ValueError, AttributeError):
        return "server_error"


def _endpoint(name: str) -> str:
    return idp_settings.ISSUER.rstrip("/") + reverse(name)


# -- the authorization endpoint (RFC 6749 section 4.1, RFC 9207, RFC 9700) ----------------


def iss_enforced() -> bool:
    """Whether authorization responses carry ``iss`` (RFC 9207), success and error alike."""
    return bool(oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS)


def plain_pkce_refused() -> bool:
    """Whether only ``S256`` is accepted as the PKCE method (RFC 9700 section 2.1.1)."""
    return bool(oauth2_settings.COMPLIANT_BCP_RFC9700_PKCE_METHOD)


def with_iss(uri: str, issuer: str) -> str:
    """``uri`` with exactly one ``iss`` (RFC 9207 section 2): in the fragment when the
    response travels there, else in the query; any ``iss`` already present is dropped."""
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "iss"]
    fragment = [(k, v) for k, v in parse_qsl(parts.fragment, keep_blank_values=True) if k != "iss"]
    (fragment if parts.fragment else query).append(("iss", issuer))
    return urlunsplit(parts._replace(query=urlencode(query), fragment=urlencode(fragment)))


class AuthorizationView(DOTAuthorizationView):
    """django-oauth-toolkit's authorization endpoint, with two RFC 9700 gates kept everywhere.

    * ``iss`` (RFC 9207 section 2) goes into *every* redirect back to the client, error
      responses included, and it is this provider's ``ISSUER``, the value its metadata
      publishes. django-oauth-toolkit adds it to successful responses only, derived from
      the request's host.
    * A PKCE ``plain`` challenge (or none named, which means ``plain``; RFC 7636 section
      4.3) is refused before the consent page, not after the user has consented.
    """

    def validate_authorization_request(self, request: HttpRequest) -> Any:
        scopes, credentials = super().validate_authorization_request(request)
        method = credentials.get("code_challenge_method") or "plain"
        if credentials.get("code_challenge") and method != "S256" and plain_pkce_refused():
            error = oauth2_errors.InvalidRequestError(
                description='Unsupported code_challenge_method; use "S256".',
                state=credentials.get("state"),
            )
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"])
        return scopes, credentials

    def redirect(self, redirect_to: str, application: Any) -> Any:
        # Every redirect of this view is an authorization response to the client's
        # registered redirect URI: the successful ones and the errors.
        if iss_enforced():
            redirect_to = with_iss(redirect_to, idp_settings.ISSUER)
        return super().redirect(redirect_to, application)


# -- metadata ----------------------------------------------------------------------------


def grant_types_supported() -> list[str]:
    """Every grant the token and authorization endpoints accept from a client registered
    for it (RFC 8414 section 2), and none that the RFC 9700 gates refuse."""
    grants = ["authorization_code", "client_credentials", "refresh_token", GRANT_TYPE]
    if not oauth2_settings.COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT:
        grants.append("implicit")
    if not oauth2_settings.COMPLIANT_BCP_RFC9700_PASSWORD_GRANT:
        grants.append("password")
    return grants


@method_decorator(storage_guard("metadata"), name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class ServerMetadataView(View):
    """RFC 8414 authorization server metadata. Each capability is read from the setting
    that decides the behaviour, so the document cannot claim what the server does not do."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scopes = list(get_scopes_backend().get_all_scopes().keys())
        implicit = not oauth2_settings.COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT
        data = {
            "issuer": idp_settings.ISSUER,
            "authorization_endpoint": _endpoint("oauth2_provider:authorize"),
            "token_endpoint": _endpoint("oauth2_provider:token"),
            "revocation_endpoint": _endpoint("oauth2_provider:revoke-token"),
            "introspection_endpoint": _endpoint("oauth2_provider:introspect"),
            "jwks_uri": _endpoint("delegation_idp:jwks"),
            "scopes_supported": scopes,
            "response_types_supported": ["code", "token"] if implicit else ["code"],
            "grant_types_supported": grant_types_supported(),
            "code_challenge_methods_supported": ["S256"] if plain_pkce_refused() else ["S256", "plain"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(idp_settings.ALLOWED_ALGORITHMS),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "authorization_response_iss_parameter_supported": iss_enforced(),
        }
        response = JsonResponse(data)
        response["Cache-Control"] = "public, max-age=3600"
        return response


@method_decorator(storage_guard("jwks"), name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class JwksView(View):
    """The provider's public keys (RFC 7517), cacheable for one JWKS cache lifetime."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Read from the database, not this process's key cache: a revoked key
        # leaves every process's JWKS at once, a new next key enters it at once.
        body = json.dumps({"keys": keys.published_jwks()}, sort_keys=True, separators=(",", ":"))
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
        cache_control = f"public, max-age={idp_settings.JWKS_CACHE_SECONDS}"
        if etag in [t.strip() for t in request.META.get("HTTP_IF_NONE_MATCH", "").split(",")]:
            response: HttpResponse = HttpResponseNotModified()
        else:
            response = HttpResponse(body, content_type="application/jwk-set+json")
        response["ETag"] = etag
        response["Cache-Control"] = cache_control
        return response


def authenticate_caller(request: HttpRequest) -> Any:
    """The django-oauth-toolkit application that authenticated this request, or None."""
    headers = {"Content-Type": request.META.get("CONTENT_TYPE", "")}
    if request.META.get("HTTP_AUTHORIZATION"):
        headers["HTTP_AUTHORIZATION"] = request.META["HTTP_AUTHORIZATION"]
        headers["Authorization"] = request.META["HTTP_AUTHORIZATION"]
    body = [(k, v) for k, v in request.POST.items() if k in ("client_id", "client_secret")]
    # The URL without its query: credentials are read from the header and the body only.
    oauth_request = OAuthlibRequest(request.build_absolute_uri(request.path), "POST", body, headers)
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    if not isinstance(validator, OAuth2Validator) or not validator.authenticate_client(oauth_request):
        return None
    return oauth_request.client


@method_decorator(storage_guard("introspection", audit_every_request=True), name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(sensitive_post_parameters(*SENSITIVE_PARAMETERS), name="dispatch")
class IntrospectionView(ClientAuthGuard, View):
    """RFC 7662 introspection, with the nested ``act`` chain, behind the token endpoint's guard.

    Only the token's own client or one of its audiences may introspect it;
    to anyone else the token is ``{"active": false}``.
    """

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    event = "introspection"
    realm = "introspection"

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        client = authenticate_caller(request)
        if client is None:
            raise Refusal(401, "invalid_client", "invalid_client", "Client authentication failed.")
        token = request.POST.get("token", "")
        if not token:
            raise Refusal(400, "invalid_request", "missing_parameter", "Missing token parameter.")
        return JsonResponse(introspect(token, client))


INACTIVE: dict[str, Any] = {"active": False}


def may_introspect(client: Any, claims: dict[str, Any]) -> bool:
    """RFC 7662 section 4: decided by registered identity only. The caller is the token's
    own client (the authenticated application), or a registered party named in its
    ``aud``. A client id is never compared with ``aud``: whoever chose a client id that
    reads like a party's URI gains nothing by it."""
    from delegation_idp.models import party_of

    if claims.get("client_id") == client.client_id:
        return True
    party = party_of(client)
    return party is not None and party.uri in jose.audiences(claims)


def introspect(token: str, client: Any) -> dict[str, Any]:
    """The RFC 7662 answer for ``token`` as seen by ``client``."""
    if len(token) > idp_settings.MAX_TOKEN_BYTES:
        return dict(INACTIVE)  # size check before any parsing or hashing
    if token.count(".") == 2:
        try:
            _header, claims = jose.verify(
                token,
                keyset.verification_key,
                algorithms=idp_settings.ALLOWED_ALGORITHMS,
                max_bytes=idp_settings.MAX_TOKEN_BYTES,
                max_header_bytes=idp_settings.MAX_HEADER_BYTES,
                max_json_depth=idp_settings.MAX_JSON_DEPTH,
            )
            jose.validate_claims(
                claims,
                issuer=idp_settings.ISSUER,
                now=time.time(),
                leeway=0,
                required=("iss", "sub", "aud", "exp", "iat", "jti", "client_id"),
            )
        except jose.JoseError:
            return dict(INACTIVE)
        row = TokenLineage.objects.filter(jti=claims["jti"]).only("revoked_at", "expires_at").first()
        if row is None or not row.is_active:
            return dict(INACTIVE)
        if not may_introspect(client, claims):
            return dict(INACTIVE)
        data: dict[str, Any] = {
            "active": True,
            **{
                k: claims[k]
                for k in ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope")
                if k in claims
            },
            "token_type": "Bearer",
        }
        if "act" in claims:
            data["act"] = claims["act"]
        return data
    # django-oauth-toolkit's opaque tokens: same rules, from its own table.
    checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
    access = (
        get_access_token_model()
        .objects.select_related("application", "user")
        .filter(token_checksum=checksum)
        .first()
    )
    if access is None or access.is_expired() or access.application_id != client.pk:
        return dict(INACTIVE)
    data = {
        "active": True,
        "scope": access.scope,
        "exp": int(access.expires.timestamp()),
        "client_id": access.application.client_id if access.application else None,
        "token_type": "Bearer",
    }
    if access.user is not None:
        data["sub"] = idp_settings.SUBJECT_RESOLVER(access.user)
        data["username"] = access.user.get_username()
    return data
