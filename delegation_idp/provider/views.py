"""The endpoints of the provider behind the client-authentication guard: token, revocation
and introspection (the authorization endpoint is :mod:`delegation_idp.provider.authorization`).

The first three sit behind :class:`~delegation_idp.provider.guard.ClientAuthGuard`. The
token endpoint answers token exchange itself (:meth:`TokenView.exchange`: the RFC 8693
grant, without django-oauth-toolkit's request round trip) and every other grant through
django-oauth-toolkit. It checks a request's DPoP proof (RFC 9449) once, before any grant
runs (:mod:`delegation_idp.provider.dpop`), and binds the token it issues to the proof's key.
Discovery (RFC 8414 metadata, the JWKS) is in
:mod:`delegation_idp.provider.discovery`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider.compat import login_not_required
from oauth2_provider.models import get_access_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import RevokeTokenView as DOTRevokeTokenView
from oauth2_provider.views import TokenView as DOTTokenView
from oauthlib.common import Request as OAuthlibRequest

from delegation_idp import TOKEN_EXCHANGE_GRANT, audit, jose
from delegation_idp.ciba import GRANT_TYPE as CIBA_GRANT
from delegation_idp.ciba import POLL_EVENT as CIBA_POLL
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import (
    InvalidClient,
    InvalidRequest,
    UnsupportedGrantType,
)
from delegation_idp.core.reasons import Reason
from delegation_idp.models import TokenLineage, party_of
from delegation_idp.provider import dpop, keys
from delegation_idp.provider.authorization import AuthorizationView  # re-exported: its earlier home
from delegation_idp.provider.guard import SENSITIVE_PARAMETERS, ClientAuthGuard, Credentials
from delegation_idp.provider.resilience import storage_guard
from delegation_idp.provider.server import DEVICE_CODE_GRANT
from delegation_idp.rfc7523 import GRANT_TYPE as JWT_BEARER_GRANT
from delegation_idp.rfc7523.grant import EVENT as ID_JAG_REDEMPTION

logger = logging.getLogger(__name__)

# The body parameters of client authentication (RFC 6749 section 2.3.1, RFC 7521 section 4.2).
CLIENT_AUTHENTICATION_PARAMETERS = frozenset(
    {"client_id", "client_secret", "client_assertion", "client_assertion_type"}
)

__all__ = [
    "AuthorizationView",
    "IntrospectionView",
    "RevokeTokenView",
    "TokenView",
    "credentials_request",
    "introspect",
    "may_introspect",
    "plain_response",
]


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
        if record.grant_type == TOKEN_EXCHANGE_GRANT:
            record.event = "token_exchange"
        elif record.grant_type == JWT_BEARER_GRANT:
            record.event = ID_JAG_REDEMPTION
        elif record.grant_type == CIBA_GRANT:
            record.event = CIBA_POLL
        # RFC 9449 section 8.2: every answer may carry the nonce to use next.
        for key, value in dpop.nonce_headers().items():
            response[key] = value

    def screen(self, request: HttpRequest, record: audit.Attempt) -> None:
        super().screen(request, record)  # parsed the form
        record.grant_type = request.POST.get("grant_type", "")[:128]
        if not record.grant_type:
            # RFC 6749 section 5.2: a missing required parameter is invalid_request
            # (oauthlib would route it to the authorization-code grant instead).
            raise InvalidRequest(Reason.MISSING_PARAMETER, "Missing grant_type parameter.")
        if record.grant_type == DEVICE_CODE_GRANT:
            # django-oauth-toolkit's view answers the device grant before the server's grant
            # table is consulted; the device flow is not offered here (DelegationServer).
            raise UnsupportedGrantType(Reason.GRANT_NOT_OFFERED)

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        proof = dpop.token_request_proof(request)  # before any grant: a refusal changes nothing
        record.jkt = proof.jkt if proof is not None else ""
        if record.grant_type == TOKEN_EXCHANGE_GRANT:
            return self.exchange(request, proof)
        if record.grant_type == JWT_BEARER_GRANT:  # RFC 7523 for ID-JAGs: the same path
            return self.exchange(request, proof, grant="jwt_bearer_grant")
        if record.grant_type == CIBA_GRANT:  # OpenID CIBA's poll: the same path
            return self.exchange(request, proof, grant="ciba_grant")
        # For django-oauth-toolkit's grants the key travels to the token generator in the
        # headers its backend copies from META (dpop.BOUND_KEY: no client header has the name).
        request.META.pop(dpop.BOUND_KEY, None)
        if proof is not None:
            request.META[dpop.BOUND_KEY] = proof.jkt
        try:
            return self._delivered(request, *args, **kwargs)
        finally:
            # django-oauth-toolkit's post() narrows this to password and client_secret.
            request.sensitive_post_parameters = SENSITIVE_PARAMETERS  # type: ignore[attr-defined]

    def exchange(
        self, request: HttpRequest, proof: dpop.Proof | None = None, grant: str = "token_exchange_grant"
    ) -> HttpResponse:
        """RFC 8693: straight to the server's token-exchange grant, with the oauthlib request
        django-oauth-toolkit's backend builds (its headers and every body value), but not its
        token endpoint's round trip nor the post-200 read-back of an ``AccessToken`` row that
        an exchanged token does not have (:mod:`delegation_idp.rfc8693.issue`)."""
        core = self.get_oauthlib_core()
        form = core.extract_body(request)  # every value of every parameter, in order
        headers, body, status = getattr(core.server, grant).create_token_response(
            credentials_request(request, form), form=form, proof=proof
        )
        return plain_response(headers, body, status)

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


def credentials_request(request: HttpRequest, form: Sequence[tuple[str, str]]) -> OAuthlibRequest:
    """The oauthlib request for a grant of this app's own: what client authentication reads,
    and only that, the credentials' headers (django-oauth-toolkit's backend copies the whole
    WSGI environment) and parameters. The grant reads the form itself."""
    headers = {"Content-Type": request.META.get("CONTENT_TYPE", "")}
    if "HTTP_AUTHORIZATION" in request.META:
        headers["HTTP_AUTHORIZATION"] = headers["Authorization"] = request.META["HTTP_AUTHORIZATION"]
    credentials = urlencode([(k, v) for k, v in form if k in CLIENT_AUTHENTICATION_PARAMETERS])
    return OAuthlibRequest(request.build_absolute_uri(request.path), "POST", credentials, headers)


def plain_response(headers: dict[str, str], body: str, status: int) -> HttpResponse:
    """A grant's ``(headers, body, status)`` as a Django response."""
    response = HttpResponse(content=body, status=status)
    for key, value in headers.items():
        response[key] = value
    return response


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
            raise InvalidClient(Reason.INVALID_CLIENT)
        token = request.POST.get("token", "")
        if not token:
            raise InvalidRequest(Reason.MISSING_PARAMETER, "Missing token parameter.")
        return JsonResponse(introspect(token, client))


INACTIVE: dict[str, Any] = {"active": False}


def may_introspect(client: Any, claims: dict[str, Any]) -> bool:
    """RFC 7662 section 4: decided by registered identity only. The caller is the token's
    own client (the authenticated application), or a registered party named in its
    ``aud``. A client id is never compared with ``aud``: whoever chose a client id that
    reads like a party's URI gains nothing by it."""

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
            _header, claims = keys.verify(token, now=time.time(), leeway=0)
        except jose.JoseError:
            return dict(INACTIVE)
        row = TokenLineage.objects.filter(jti=claims["jti"]).only("revoked_at", "expires_at", "jkt").first()
        if row is None or not row.is_active:
            return dict(INACTIVE)
        jkt = claims.get("cnf", {}).get("jkt", "") if isinstance(claims.get("cnf"), dict) else ""
        if jkt != row.jkt:
            return dict(INACTIVE)  # not the token lineage recorded
        if not may_introspect(client, claims):
            return dict(INACTIVE)
        data: dict[str, Any] = {
            "active": True,
            **{
                k: claims[k]
                for k in ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope")
                if k in claims
            },
            # RFC 9449 section 6.2: a bound token's key, and its scheme.
            "token_type": "DPoP" if jkt else "Bearer",
        }
        if jkt:
            data["cnf"] = {"jkt": jkt}
        if "act" in claims:
            data["act"] = claims["act"]
        if "authorization_details" in claims:  # RFC 9396 section 9.2: what the user approved
            data["authorization_details"] = claims["authorization_details"]
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
