"""Discovery routes, mounted at the site root: RFC 8414 metadata and the JWKS."""

from django.urls import path

from delegation_idp.provider import discovery

app_name = "delegation_idp"

urlpatterns = [
    path(".well-known/oauth-authorization-server", discovery.ServerMetadataView.as_view(), name="metadata"),
    path(".well-known/jwks.json", discovery.JwksView.as_view(), name="jwks"),
]
