"""The authorization endpoint (RFC 6749 section 4.1): django-oauth-toolkit's view with this
provider's gates, RFC 9207 ``iss`` on every response, S256-only PKCE before consent, and
RFC 8707 ``resource`` under the delegation policy (:mod:`delegation_idp.provider.resources`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.http import HttpRequest
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import AuthorizationView as DOTAuthorizationView
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from delegation_idp import audit
from delegation_idp.conf import idp_settings
from delegation_idp.core import policy
from delegation_idp.core.errors import OAuthError, refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.models import party_of
from delegation_idp.provider import dpop, throttling
from delegation_idp.provider import resources as resources_policy

__all__ = ["AuthorizationView", "iss_enforced", "plain_pkce_refused", "with_iss"]


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
    """django-oauth-toolkit's authorization endpoint, with this provider's gates kept everywhere.

    * ``iss`` (RFC 9207 section 2) goes into *every* redirect back to the client, error
      responses included, and it is this provider's ``ISSUER``, the value its metadata
      publishes. django-oauth-toolkit adds it to successful responses only, derived from
      the request's host.
    * A PKCE ``plain`` challenge (or none named, which means ``plain``; RFC 7636 section
      4.3) is refused before the consent page, not after the user has consented.
    * A disabled party is refused here too (``unauthorized_client``), not only when it
      redeems the code.
    * RFC 8707 ``resource`` values are the policy's to allow
      (:func:`delegation_idp.provider.resources.authorize`): before the consent page, and
      again when the code is issued (the consent form's hidden field can be edited). A
      refusal is an error redirect (RFC 8707 section 2: ``invalid_target``) and an audit
      record; nothing is issued.
    """

    template_name = "delegation_idp/authorize.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """What the consent page names: each resource with the party it belongs to, each scope
        with its description, and whether the client registered itself."""
        context: dict[str, Any] = super().get_context_data(**kwargs)
        application = context.get("application")
        party = party_of(application)
        resources = str(getattr(self, "oauth2_data", {}).get("resource") or "").split()
        owners = dict(resources_policy.owners_of(resources)) if resources else {}
        descriptions = context.get("scopes_descriptions") or []
        context.update(
            delegation_party=party,
            delegation_resources=[{"resource": r, "owner": owners.get(r)} for r in resources],
            delegation_scopes=list(zip(context.get("scopes") or [], descriptions, strict=False)),
        )
        return context

    def validate_authorization_request(self, request: HttpRequest) -> Any:
        scopes, credentials = super().validate_authorization_request(request)
        method = credentials.get("code_challenge_method") or "plain"
        if credentials.get("code_challenge") and method != "S256" and plain_pkce_refused():
            error = oauth2_errors.InvalidRequestError(
                description='Unsupported code_challenge_method; use "S256".',
                state=credentials.get("state"),
            )
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"])
        jkt = request.GET.get("dpop_jkt")
        if jkt is not None and not dpop.JKT_FORMAT.match(jkt):
            # RFC 9449 section 10: the code is bound to the key this thumbprint names.
            self.audit_refusal(request, credentials, Reason.DPOP_JKT_MALFORMED, scopes)
            error = oauth2_errors.InvalidRequestError(
                description=Reason.DPOP_JKT_MALFORMED.description, state=credentials.get("state")
            )
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"])
        self.authorize_resources(request, credentials, request.GET.getlist("resource"), scopes)
        return scopes, credentials

    @staticmethod
    def audit_refusal(request: HttpRequest, credentials: Any, reason: Reason, scopes: Any = ()) -> None:
        user = request.user if request.user.is_authenticated else None
        audit.write_refusal(
            event="authorization",
            grant_type=str(credentials.get("response_type") or ""),
            client_id=str(credentials.get("client_id") or "")[:255],
            user_id=str(getattr(user, "pk", "") or ""),
            requested_scope=" ".join(scopes or []),
            client_ip=throttling.client_address(request.META),
            error=reason.error,
            reason=reason,
        )

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        # django-oauth-toolkit's approval_prompt=auto skips the consent page when an earlier
        # token covers the scopes, whatever resource it was for: a request naming a resource
        # always shows the page (a trusted application's skip_authorization, which an admin
        # sets, still skips it).
        if request.GET.getlist("resource"):
            query = request.GET.copy()
            query["approval_prompt"] = "force"
            query._mutable = False
            request.GET = query  # type: ignore[assignment]  # a copy, read-only again
        return super().get(request, *args, **kwargs)

    def form_valid(self, form: Any) -> Any:
        # django-oauth-toolkit reads the consent form's client with .get(): a form naming no
        # client (edited, or a client ID metadata document never resolved) is an error page,
        # as on the GET, never a 500.
        client_id = form.cleaned_data.get("client_id")
        client = get_application_model().objects.filter(client_id=client_id).first() if client_id else None
        if client is None:
            return self.error_response(
                FatalClientError(error=oauth2_errors.InvalidClientIdError()), application=None
            )
        try:
            # Every answer to the consent form is a redirect to its redirect_uri (an approval,
            # a denial, an error django-oauth-toolkit finds): never to one the client did not
            # register (the form's fields can be edited).
            self.check_redirect_uri(self.request, client, form.cleaned_data)
        except OAuthToolkitError as refused:
            return self.error_response(refused, application=None)
        return super().form_valid(form)

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> Any:
        if allow:
            resources = credentials.get("resource") or []
            self.authorize_resources(request, credentials, list(resources), str(scopes or "").split())
        return super().create_authorization_response(request, scopes, credentials, allow)

    @staticmethod
    def check_redirect_uri(request: HttpRequest, client: Any, credentials: Any) -> None:
        """An error page (RFC 6749 section 4.1.2.1), audited, unless ``redirect_uri`` is one the
        client registered: a refusal is never redirected anywhere else."""
        redirect_uri = credentials.get("redirect_uri") or ""
        if client is not None and client.redirect_uri_allowed(redirect_uri):
            return
        reason = Reason.REDIRECT_URI_UNREGISTERED
        user = request.user if request.user.is_authenticated else None
        audit.write_refusal(
            event="authorization",
            grant_type=str(credentials.get("response_type") or ""),
            client_id=str(credentials.get("client_id") or "")[:255],
            user_id=str(getattr(user, "pk", "") or ""),
            client_ip=throttling.client_address(request.META),
            error=reason.error,
            reason=reason,
        )
        raise FatalClientError(error=oauth2_errors.MismatchingRedirectURIError())

    @staticmethod
    def authorize_resources(
        request: HttpRequest, credentials: dict[str, Any], resources: list[str], scopes: Any
    ) -> None:
        """Refuse, as an error redirect, a disabled party, and what the policy does not allow
        ``resources`` for."""
        client = get_application_model().objects.filter(client_id=credentials["client_id"]).first()
        AuthorizationView.check_redirect_uri(request, client, credentials)
        party = party_of(client)
        user = request.user if request.user.is_authenticated else None
        try:
            denied = policy.may_obtain_tokens(party.as_view() if party is not None else None)
            if denied is not None:
                raise refusal(denied)
            if resources:
                resources_policy.authorize(
                    party,
                    resources,
                    user=user,
                    scopes=list(scopes or []),
                    allowed_for_client=getattr(client, "pk", None),
                )
        except OAuthError as refused:
            audit.write_refusal(
                event="authorization",
                grant_type=str(credentials.get("response_type") or ""),
                client_id=str(credentials["client_id"])[:255],
                user_id=str(getattr(user, "pk", "") or ""),
                requested_audience=resources,
                requested_scope=" ".join(scopes or []),
                client_ip=throttling.client_address(request.META),
                error=refused.error,
                reason=refused.reason,
            )
            error = oauth2_errors.CustomOAuth2Error(
                error=refused.error,
                description=refused.description,
                state=credentials.get("state"),
                status_code=refused.status,
            )
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]) from None

    def redirect(self, redirect_to: str, application: Any) -> Any:
        # Every redirect of this view is an authorization response to the client's
        # registered redirect URI: the successful ones and the errors.
        if iss_enforced():
            redirect_to = with_iss(redirect_to, idp_settings.ISSUER)
        return super().redirect(redirect_to, application)
