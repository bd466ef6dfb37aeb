"""Self-service client registration: off unless a site turns it on.

django-oauth-toolkit's ``management_urlpatterns`` (``/o/applications/...``) let any
signed-in user register a client under a ``client_id`` of their choosing; this app
never mounts them. A site that wants self-service sets
``DELEGATION_IDP["CLIENT_REGISTRATION"] = "dcr"`` and django-oauth-toolkit's own
``DCR_ENABLED``: registration is then RFC 7591 dynamic client registration, under
the permission classes of ``DCR_REGISTRATION_PERMISSION_CLASSES``, and the server
generates every ``client_id`` (a ``client_id`` in the registrant's metadata is ignored).

Both views put registration under the registration rules
(:mod:`delegation_idp.provider.self_registered`): the metadata is read with bounded size
and depth, and a registration (RFC 7591) or an update (RFC 7592) whose redirect URIs no
enabled rule admits is refused with ``invalid_redirect_uri`` (RFC 7591 section 3.2.2),
audited; a client an admin promoted is the admin's to change, not its own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import (
    DynamicClientRegistrationManagementView,
    DynamicClientRegistrationView,
)

from delegation_idp import audit, jose
from delegation_idp.conf import idp_settings
from delegation_idp.core.reasons import Reason
from delegation_idp.models import Party
from delegation_idp.provider import self_registered
from delegation_idp.provider.resilience import NO_STORE

__all__ = ["DCR", "RegistrationManagementView", "RegistrationView", "anonymous_may_register", "enabled"]

DCR = "dcr"


def enabled() -> bool:
    """Whether this site turned self-service registration on (``CLIENT_REGISTRATION``)."""
    return idp_settings.CLIENT_REGISTRATION == DCR


# Client metadata is small (RFC 7591 section 2): a few redirect URIs and names.
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8


def _not_found() -> HttpResponse:
    # The same answer as django-oauth-toolkit's own views with DCR_ENABLED off.
    return JsonResponse({"error": "not_found"}, status=404)


def _error(error: str, description: str, status: int = 400) -> HttpResponse:
    """An RFC 7591 section 3.2.2 error: JSON, never cached."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    for key, value in NO_STORE.items():
        response[key] = value
    return response


def _refusal(reason: Reason, client_id: str = "") -> HttpResponse:
    """The catalogue's answer for ``reason``, audited (event ``registration``)."""
    audit.write_refusal(
        event="registration", grant_type=DCR, client_id=client_id[:255], error=reason.error, reason=reason
    )
    return _error(reason.error, reason.description, reason.status)


def _metadata(request: HttpRequest) -> dict[str, Any] | HttpResponse:
    """The request's client metadata, read with bounded size and depth, or the error."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = MAX_METADATA_BYTES + 1
    if declared > MAX_METADATA_BYTES:
        return _refusal(Reason.CLIENT_METADATA_INVALID)
    body = request.read(MAX_METADATA_BYTES + 1)
    if len(body) > MAX_METADATA_BYTES:
        return _refusal(Reason.CLIENT_METADATA_INVALID)
    request._body = body  # django-oauth-toolkit's view reads request.body afterwards
    try:
        data = jose.strict_json_loads(body, max_depth=MAX_METADATA_DEPTH)
    except jose.JoseError:
        return _refusal(Reason.CLIENT_METADATA_INVALID)
    if not isinstance(data, dict):
        return _refusal(Reason.CLIENT_METADATA_INVALID)
    return data


def _admitted(request: HttpRequest, client_id: str = "") -> HttpResponse | None:
    """None when a registration rule admits the metadata's redirect URIs, else the error."""
    data = _metadata(request)
    if isinstance(data, HttpResponse):
        return data
    uris = data.get("redirect_uris", [])
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        return _refusal(Reason.CLIENT_METADATA_INVALID, client_id)
    if self_registered.admits_registration(uris, client_id=client_id):
        return None
    reason = Reason.REDIRECT_URI_NOT_PERMITTED  # audited by admits_registration
    return _error(reason.error, reason.description, reason.status)


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RegistrationView(DynamicClientRegistrationView):
    """RFC 7591 registration, answered only when ``CLIENT_REGISTRATION`` is ``"dcr"``, under
    the registration rules."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            return _not_found()
        return super().dispatch(request, *args, **kwargs)  # type: ignore[no-any-return]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The registrant first (django-oauth-toolkit's permission classes, which it asks again
        # and answers 401 for), then the metadata against the registration rules.
        classes = oauth2_settings.DCR_REGISTRATION_PERMISSION_CLASSES or ()
        if classes and all(cls().has_permission(request) for cls in classes):
            refused = _admitted(request)
            if refused is not None:
                return refused
        return super().post(request, *args, **kwargs)  # type: ignore[no-any-return]


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RegistrationManagementView(DynamicClientRegistrationManagementView):
    """RFC 7592 client configuration, answered only when ``CLIENT_REGISTRATION`` is ``"dcr"``:
    an update stays within the registration rules, and a promoted client is not its own to
    change or delete."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            return _not_found()
        client_id = str(kwargs.get("client_id", ""))
        # Without a registration access token django-oauth-toolkit answers 401 and reveals
        # nothing; only then are the client's standing and the rules consulted.
        if request.method in ("PUT", "DELETE") and _bearer(request) and _promoted(client_id):
            return _refusal(Reason.CLIENT_MANAGED_BY_ADMIN, client_id)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[no-any-return]

    def put(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _admitted(request, client_id=client_id) if _bearer(request) else None
        if refused is not None:
            return refused
        return super().put(request, client_id, *args, **kwargs)  # type: ignore[no-any-return]


def _bearer(request: HttpRequest) -> bool:
    """Whether the request presents a bearer token (RFC 7592's registration access token)."""
    return str(request.META.get("HTTP_AUTHORIZATION", "")).lower().startswith("bearer ")


def _promoted(client_id: str) -> bool:
    """Whether ``client_id`` is linked to a party that an admin governs (registered, or promoted)."""
    return Party.objects.filter(application__client_id=client_id, registration=Party.BY_ADMIN).exists()


def anonymous_may_register(permission_classes: Any) -> list[str]:
    """The permission classes that let a request without any credentials through, if
    all of them do (django-oauth-toolkit requires every class to pass, and an empty list
    refuses everyone); else ``[]``. Each class is asked about a bare anonymous POST."""
    classes = list(permission_classes or ())
    if not classes:
        return []
    request = HttpRequest()
    request.method = "POST"
    request.META = {"CONTENT_TYPE": "application/json", "REMOTE_ADDR": "192.0.2.1"}
    request.user = AnonymousUser()
    names = []
    for cls in classes:
        try:
            allowed = bool(cls().has_permission(request))
        except Exception:  # a class that cannot judge a bare request refuses it
            allowed = False
        if not allowed:
            return []
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return names
