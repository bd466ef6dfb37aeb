from django.contrib import admin
from django.urls import include, path

from delegation_idp.provider.health import HealthView
from delegation_idp.provider.metrics import MetricsView

urlpatterns = [
    path("health/", HealthView.as_view(), name="health"),
    path("metrics", MetricsView.as_view(), name="metrics"),  # 404 unless IDP_METRICS=1
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("o/", include("delegation_idp.urls")),
    path("", include("delegation_idp.wellknown_urls")),
    path("", include("example_project.demo_services.urls")),
]
