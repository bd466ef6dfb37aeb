"""HTTP endpoints: the hardened token endpoint, RFC 8414 metadata, JWKS, RFC 7662 introspection."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider.compat import login_not_required
from oauth2_provider.models import get_access_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import TokenView as DOTTokenView
from oauthlib.common import Request as OAuthlibRequest

from . import audit, client_auth, jose, keys, throttling
from .conf import idp_settings
from .keys import keyset
from .models import TokenLineage
from .rfc8693 import GRANT_TYPE

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

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    """An RFC 6749 section 5.2 error response: JSON, never cached."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    for key, value in {**NO_STORE, **(headers or {})}.items():
        response[key] = value
    return response


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


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


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(sensitive_post_parameters(*SENSITIVE_PARAMETERS), name="dispatch")
class TokenView(DOTTokenView):
    """django-oauth-toolkit's token endpoint behind input limits, throttling and audit.

    Every request, whatever its outcome, leaves one audit record; every error
    is an RFC 6749 JSON error with ``Cache-Control: no-store``.
    """

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit.attempt(event="token", client_ip=_client_ip(request)) as record:
            response = self._guarded(request, record, *args, **kwargs)
            if response.status_code != 200 and record.decision != "denied":
                record.deny(_error_code(response), record.reason)
            elif response.status_code == 200 and not record.decision:
                record.grant()
            if record.grant_type == GRANT_TYPE:
                record.event = "token_exchange"
        for key, value in NO_STORE.items():
            response[key] = value
        # oauthlib leaves Content-Type, and sometimes a description, out of its errors.
        if response.content[:1] == b"{":
            response["Content-Type"] = "application/json"
            if response.status_code != 200:
                _describe(response)
        if response.status_code == 401:
            throttling.note_auth_failure(record.client_id, _client_ip(request))
        return response

    def _guarded(
        self, request: HttpRequest, record: audit.Attempt, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        # Per address first, before the body is read: floods of malformed requests count too.
        limited = throttling.check_address(_client_ip(request))
        if limited is not None:
            return _throttled(record, limited)
        if request.method != "POST":
            record.deny("invalid_request", "method_not_allowed")
            return oauth_error(
                405, "invalid_request", "The token endpoint accepts POST only.", {"Allow": "POST"}
            )
        too_large = _oversized(request)
        if too_large is not None:
            record.deny("invalid_request", "request_too_large")
            return too_large
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            record.deny("invalid_request", "bad_content_type")
            return oauth_error(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        if not _form_is_clean(request.body):
            record.deny("invalid_request", "bad_encoding")
            return oauth_error(400, "invalid_request", "The body is not valid form encoding.")
        try:
            record.grant_type = request.POST.get("grant_type", "")[:128]
        except SuspiciousOperation:  # e.g. more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
            record.deny("invalid_request", "too_many_fields")
            return oauth_error(400, "invalid_request", "The request has too many parameters.")
        if not record.grant_type:
            # RFC 6749 section 5.2: a missing required parameter is invalid_request
            # (oauthlib would route it to the authorization-code grant instead).
            record.deny("invalid_request", "missing_parameter")
            return oauth_error(400, "invalid_request", "Missing grant_type parameter.")
        basic = basic_credentials(request)
        if basic is False:
            record.deny("invalid_client", "bad_basic_credentials")
            return oauth_error(
                401,
                "invalid_client",
                "Client authentication failed.",
                {"WWW-Authenticate": 'Basic realm="token"'},
            )
        body_auth = "client_secret" in request.POST or "client_assertion" in request.POST
        if basic and body_auth:
            record.deny("invalid_request", "multiple_client_authentication")
            return oauth_error(400, "invalid_request", "Use exactly one client authentication method.")
        client_id = basic[0] if isinstance(basic, tuple) else request.POST.get("client_id", "")
        record.client_id = client_id[:255]
        limited = throttling.check_client(client_id, _client_ip(request))
        if limited is not None:
            return _throttled(record, limited)
        try:
            return super().post(request, *args, **kwargs)
        except Exception:
            # Never let an exception reach Django's error reports: their frame variables
            # include django-oauth-toolkit's and oauthlib's copies of the raw body, which
            # hold subject_token, actor_token and client_assertion. Logged without them.
            logger.exception("token endpoint failed (grant_type=%r)", record.grant_type)
            record.deny("server_error", "unhandled_exception")
            return oauth_error(500, "server_error", "The server could not handle the request.")
        finally:
            # django-oauth-toolkit's post() narrows this to password and client_secret.
            request.sensitive_post_parameters = SENSITIVE_PARAMETERS  # type: ignore[attr-defined]


def _throttled(record: audit.Attempt | None, wait: int) -> HttpResponse:
    """429 with ``Retry-After`` (RFC 6585 section 4, RFC 9110 section 10.2.3)."""
    if record is not None:
        record.deny("slow_down", "throttled")
    return oauth_error(429, "slow_down", "Too many requests.", {"Retry-After": str(wait)})


def _oversized(request: HttpRequest) -> HttpResponse | None:
    """The error for a body over ``MAX_REQUEST_BYTES`` (or a bad length), before it is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if 0 <= length <= idp_settings.MAX_REQUEST_BYTES:
        return None
    return oauth_error(413 if length > 0 else 400, "invalid_request", "The request body is too large.")


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


@method_decorator(login_not_required, name="dispatch")
class ServerMetadataView(View):
    """RFC 8414 authorization server metadata."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scopes = list(get_scopes_backend().get_all_scopes().keys())
        data = {
            "issuer": idp_settings.ISSUER,
            "authorization_endpoint": _endpoint("oauth2_provider:authorize"),
            "token_endpoint": _endpoint("oauth2_provider:token"),
            "revocation_endpoint": _endpoint("oauth2_provider:revoke-token"),
            "introspection_endpoint": _endpoint("oauth2_provider:introspect"),
            "jwks_uri": _endpoint("delegation_idp:jwks"),
            "scopes_supported": scopes,
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "client_credentials",
                "refresh_token",
                GRANT_TYPE,
            ],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(idp_settings.ALLOWED_ALGORITHMS),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "authorization_response_iss_parameter_supported": True,
        }
        response = JsonResponse(data)
        response["Cache-Control"] = "public, max-age=3600"
        return response


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
    oauth_request = OAuthlibRequest(request.build_absolute_uri(), "POST", body, headers)
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    if not isinstance(validator, OAuth2Validator) or not validator.authenticate_client(oauth_request):
        return None
    return oauth_request.client


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(sensitive_post_parameters(*SENSITIVE_PARAMETERS), name="dispatch")
class IntrospectionView(View):
    """RFC 7662 introspection, with the nested ``act`` chain.

    Only the token's own client or one of its audiences may introspect it;
    to anyone else the token is ``{"active": false}``.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        address = _client_ip(request)
        wait = throttling.check_address(address)
        if wait is not None:
            return _throttled(None, wait)
        too_large = _oversized(request)
        if too_large is not None:
            return too_large
        basic = basic_credentials(request)
        claimed = basic[0] if isinstance(basic, tuple) else request.POST.get("client_id", "")
        wait = throttling.check_client(claimed, address)
        if wait is not None:
            return _throttled(None, wait)
        client = authenticate_caller(request)
        if client is None:
            throttling.note_auth_failure(claimed, address)
            return oauth_error(
                401,
                "invalid_client",
                "Client authentication failed.",
                {"WWW-Authenticate": 'Basic realm="introspection"'},
            )
        token = request.POST.get("token", "")
        if not token:
            return oauth_error(400, "invalid_request", "Missing token parameter.")
        data = introspect(token, client)
        response = JsonResponse(data)
        for key, value in NO_STORE.items():
            response[key] = value
        return response


INACTIVE: dict[str, Any] = {"active": False}


def may_introspect(client: Any, claims: dict[str, Any]) -> bool:
    """RFC 7662 section 4: decided by registered identity only. The caller is the token's
    own client (the authenticated application), or a registered party named in its
    ``aud``. A client id is never compared with ``aud``: whoever chose a client id that
    reads like a party's URI gains nothing by it."""
    from .models import party_of

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
