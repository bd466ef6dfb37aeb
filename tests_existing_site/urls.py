from django.contrib import admin
from django.urls import include, path

from .accounts import views

urlpatterns = [
    path("admin/", admin.site.urls),
    # Was path("o/", include("oauth2_provider.urls")) before delegation_idp.
    path("o/", include("delegation_idp.urls")),  # delegation_idp
    path("", include("delegation_idp.wellknown_urls")),  # delegation_idp
    path("api/me/", views.MeView.as_view(), name="me"),
    path("api/drf/me/", views.DrfMeView.as_view(), name="drf-me"),
]
