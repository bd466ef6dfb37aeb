"""The backchannel authentication endpoint (OpenID CIBA Core section 7), behind the token
endpoint's guard: the same input limits, throttling, failure lockout, ``no-store`` and one
audit record per request (:class:`~delegation_idp.provider.guard.ClientAuthGuard`).

It checks the request's DPoP proof (RFC 9449) before anything else, as the token endpoint
does, and hands the form to the server's CIBA grant (:mod:`delegation_idp.ciba.grant`)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider.compat import login_not_required
from oauth2_provider.views.mixins import OAuthLibMixin

from delegation_idp import audit
from delegation_idp.ciba import REQUEST_EVENT
from delegation_idp.provider import dpop
from delegation_idp.provider.guard import SENSITIVE_PARAMETERS, ClientAuthGuard, Credentials
from delegation_idp.provider.resilience import storage_guard
from delegation_idp.provider.views import credentials_request, plain_response

__all__ = ["BackchannelAuthenticationView"]


@method_decorator(storage_guard(REQUEST_EVENT, audit_every_request=True), name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(sensitive_post_parameters(*SENSITIVE_PARAMETERS), name="dispatch")
class BackchannelAuthenticationView(ClientAuthGuard, OAuthLibMixin, View):
    """``POST`` a backchannel authentication request; ``200`` with ``auth_req_id``."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    event = REQUEST_EVENT
    realm = "backchannel"
    content_types = ("application/x-www-form-urlencoded",)

    def answer(
        self, request: HttpRequest, record: audit.Attempt, credentials: Credentials, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        proof = dpop.token_request_proof(request)  # before anything: a refusal changes nothing
        record.jkt = proof.jkt if proof is not None else ""
        core = self.get_oauthlib_core()
        form = core.extract_body(request)  # every value of every parameter, in order
        headers, body, status = core.server.ciba_grant.create_backchannel_response(
            credentials_request(request, form), form=form, proof=proof
        )
        return plain_response(headers, body, status)
