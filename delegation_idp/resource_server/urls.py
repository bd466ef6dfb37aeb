"""Mount at the resource server's root: ``path("", include("delegation_idp.resource_server.urls"))``.

The metadata of the root resource is served at ``/.well-known/oauth-protected-resource``;
that of a resource with a path at that path appended (RFC 9728 section 3.1), for the paths
the site declares only (``RESOURCE_URL``'s, ``RESOURCE_PATHS``): any other suffix is a 404.
"""

from django.urls import path, re_path

from delegation_idp.resource_server.metadata import ProtectedResourceMetadataView

app_name = "delegation_idp_contrib"

urlpatterns = [
    path(".well-known/oauth-protected-resource", ProtectedResourceMetadataView.as_view(), name="metadata"),
    re_path(
        r"^\.well-known/oauth-protected-resource/(?P<suffix>.*)$",
        ProtectedResourceMetadataView.as_view(),
        name="metadata-path",
    ),
]
