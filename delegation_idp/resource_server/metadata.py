"""RFC 9728 OAuth 2.0 Protected Resource Metadata, as a view to mount.

https://www.rfc-editor.org/rfc/rfc9728 ::

    # urls.py of the resource server
    path("", include("delegation_idp.resource_server.urls")),

serves ``/.well-known/oauth-protected-resource`` (plus the resource identifier's
path, section 3.1) with ``resource`` = ``RESOURCE_SERVER_URI`` and
``authorization_servers`` = [``ISSUER``]. Clients find the provider there and
ask it for a token with ``resource``/``audience`` naming this service.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from delegation_idp.conf import idp_settings

__all__ = ["ProtectedResourceMetadataView", "protected_resource_metadata"]


def protected_resource_metadata(**overrides: Any) -> dict[str, Any]:
    """The metadata document (RFC 9728 section 2) from settings, with ``overrides``."""
    data: dict[str, Any] = {
        "resource": idp_settings.RESOURCE_SERVER_URI,
        "authorization_servers": [idp_settings.ISSUER],
        "bearer_methods_supported": ["header"],
    }
    scopes = list(idp_settings.RESOURCE_SCOPES_SUPPORTED or [])
    if scopes:
        data["scopes_supported"] = scopes
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data


class ProtectedResourceMetadataView(View):
    """``GET`` answers the metadata as JSON; class attributes override settings."""

    resource_name: str | None = None
    resource_documentation: str | None = None
    scopes_supported: list[str] | None = None
    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not idp_settings.RESOURCE_SERVER_URI:
            return JsonResponse({"error": "not_configured"}, status=404)
        data = protected_resource_metadata(
            resource_name=self.resource_name,
            resource_documentation=self.resource_documentation,
            scopes_supported=self.scopes_supported,
        )
        response = JsonResponse(data)
        response["Cache-Control"] = "public, max-age=3600"
        return response
