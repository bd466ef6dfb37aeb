"""The example site plus two APIs protected by django-oauth-toolkit as it ships, as the
existing site that installs this app keeps them (README, "Installing into an existing site";
tests_existing_site): its ``ProtectedResourceView`` and Django REST framework's
``OAuth2Authentication``. Both validate tokens through ``OAUTH2_VALIDATOR_CLASS``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.views.generic import ProtectedResourceView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from example_project.urls import urlpatterns as site


class MeView(ProtectedResourceView):
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        return JsonResponse({"ok": True})


class HasAccessToken(BasePermission):
    """Any valid token, a client's own (client credentials) included: ``request.auth`` is set."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth is not None


class DrfMeView(APIView):
    authentication_classes = [OAuth2Authentication]
    permission_classes = [HasAccessToken]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path("api/me/", MeView.as_view()),
    path("api/drf/me/", DrfMeView.as_view()),
    *site,
]
