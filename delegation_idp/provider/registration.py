"""Self-service client registration: off unless a site turns it on.

django-oauth-toolkit's ``management_urlpatterns`` (``/o/applications/...``) let any
signed-in user register a client under a ``client_id`` of their choosing; this app
never mounts them. A site that wants self-service sets
``DELEGATION_IDP["CLIENT_REGISTRATION"] = "dcr"`` and django-oauth-toolkit's own
``DCR_ENABLED``: registration is then RFC 7591 dynamic client registration, under
the permission classes of ``DCR_REGISTRATION_PERMISSION_CLASSES``, and the server
generates every ``client_id`` (a ``client_id`` in the registrant's metadata is ignored).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required
from oauth2_provider.views import (
    DynamicClientRegistrationManagementView,
    DynamicClientRegistrationView,
)

from delegation_idp.conf import idp_settings

__all__ = ["DCR", "RegistrationManagementView", "RegistrationView", "anonymous_may_register", "enabled"]

DCR = "dcr"


def enabled() -> bool:
    """Whether this site turned self-service registration on (``CLIENT_REGISTRATION``)."""
    return idp_settings.CLIENT_REGISTRATION == DCR


def _not_found() -> HttpResponse:
    # The same answer as django-oauth-toolkit's own views with DCR_ENABLED off.
    return JsonResponse({"error": "not_found"}, status=404)


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RegistrationView(DynamicClientRegistrationView):
    """RFC 7591 registration, answered only when ``CLIENT_REGISTRATION`` is ``"dcr"``."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            return _not_found()
        return super().dispatch(request, *args, **kwargs)  # type: ignore[no-any-return]


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RegistrationManagementView(DynamicClientRegistrationManagementView):
    """RFC 7592 client configuration, answered only when ``CLIENT_REGISTRATION`` is ``"dcr"``."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            return _not_found()
        return super().dispatch(request, *args, **kwargs)  # type: ignore[no-any-return]


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
