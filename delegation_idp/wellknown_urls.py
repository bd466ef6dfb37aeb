"""Discovery routes, mounted at the site root: RFC 8414 metadata and the JWKS."""

from django.urls import path

from delegation_idp.provider import views

app_name = "delegation_idp"

urlpatterns = [
    path(".well-known/oauth-authorization-server", views.ServerMetadataView.as_view(), name="metadata"),
    path(".well-known/jwks.json", views.JwksView.as_view(), name="jwks"),
]
