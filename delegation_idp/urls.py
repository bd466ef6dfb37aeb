"""URLs that replace ``oauth2_provider.urls`` (same ``oauth2_provider`` namespace).

Mount under the prefix you used for django-oauth-toolkit::

    path("o/", include("delegation_idp.urls")),
    path("", include("delegation_idp.wellknown_urls")),

The authorization, token, introspection and revocation endpoints are this app's (subclasses
of django-oauth-toolkit's views); every other route is django-oauth-toolkit's own.
"""

from django.urls import path
from oauth2_provider import urls as dot_urls

from . import views

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", views.AuthorizationView.as_view(), name="authorize"),
    path("token/", views.TokenView.as_view(), name="token"),
    path("introspect/", views.IntrospectionView.as_view(), name="introspect"),
    path("revoke_token/", views.RevokeTokenView.as_view(), name="revoke-token"),
    *dot_urls.base_urlpatterns,
    *dot_urls.management_urlpatterns,
]
