"""Discovery: RFC 8414 authorization server metadata and the provider's JWKS (RFC 7517),
mounted at the site root by :mod:`delegation_idp.wellknown_urls`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings

from delegation_idp import TOKEN_EXCHANGE_GRANT
from delegation_idp.ciba import DELIVERY_MODES as CIBA_DELIVERY_MODES
from delegation_idp.ciba import GRANT_TYPE as CIBA_GRANT
from delegation_idp.conf import idp_settings
from delegation_idp.idjag import GRANT_PROFILE as ID_JAG_GRANT_PROFILE
from delegation_idp.provider import dpop, keys, registration, status_lists
from delegation_idp.provider.authorization import iss_enforced, plain_pkce_refused
from delegation_idp.provider.resilience import storage_guard
from delegation_idp.rfc7523 import GRANT_TYPE as JWT_BEARER_GRANT
from delegation_idp.statuslist import AGGREGATION_METADATA

__all__ = ["JwksView", "ServerMetadataView", "grant_types_supported"]


def _endpoint(name: str) -> str:
    return idp_settings.ISSUER.rstrip("/") + reverse(name)


def grant_types_supported() -> list[str]:
    """Every grant the token and authorization endpoints accept from a client registered
    for it (RFC 8414 section 2), and none that the RFC 9700 gates refuse."""
    grants = [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        TOKEN_EXCHANGE_GRANT,
        JWT_BEARER_GRANT,
        CIBA_GRANT,
    ]
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
            # RFC 9449 section 5.1: the algorithms of DPoP proofs this server accepts.
            "dpop_signing_alg_values_supported": list(dpop.signing_algorithms()),
            # draft-ietf-oauth-client-id-metadata-document: the client id may be the URL of
            # its metadata document (django-oauth-toolkit's CIMD support, governed here).
            "client_id_metadata_document_supported": bool(oauth2_settings.CIMD_ENABLED),
            # draft-ietf-oauth-identity-assertion-authz-grant section 6: ID-JAGs of trusted
            # issuers are redeemed with the jwt-bearer grant (delegation_idp.rfc7523).
            "authorization_grant_profiles_supported": [ID_JAG_GRANT_PROFILE],
            # OpenID CIBA Core section 4: the user approves a delegation (delegation_idp.ciba),
            # delivered by polling the token endpoint; no user code.
            "backchannel_authentication_endpoint": _endpoint("oauth2_provider:backchannel-authentication"),
            "backchannel_token_delivery_modes_supported": list(CIBA_DELIVERY_MODES),
            "backchannel_user_code_parameter_supported": False,
        }
        if idp_settings.AUTHORIZATION_DETAILS_TYPES:
            # RFC 9396 section 10: the authorization_details types accepted (absent: any type).
            data["authorization_details_types_supported"] = list(idp_settings.AUTHORIZATION_DETAILS_TYPES)
        if status_lists.enabled():
            # draft-ietf-oauth-status-list section 9.1: where the list of status lists is.
            data[AGGREGATION_METADATA] = status_lists.aggregation_uri()
        if registration.enabled() and oauth2_settings.DCR_ENABLED:
            data["registration_endpoint"] = _endpoint("oauth2_provider:dcr-register")
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
