"""The stock site's URLs: django-oauth-toolkit's own, under ``/o/`` (token view at ``/o/token/``)."""

from django.urls import include, path

urlpatterns = [path("o/", include("oauth2_provider.urls"))]
