from django.contrib import admin
from django.urls import include, path

from delegation_idp.provider.health import HealthView

urlpatterns = [
    path("health/", HealthView.as_view(), name="health"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("o/", include("delegation_idp.urls")),
    path("", include("delegation_idp.wellknown_urls")),
    path("", include("example_project.demo_services.urls")),
]
