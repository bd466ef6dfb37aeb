"""The existing site's own APIs, protected by django-oauth-toolkit as before."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from oauth2_provider.views.generic import ProtectedResourceView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class MeView(ProtectedResourceView):
    """django-oauth-toolkit's own bearer-token protection."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        access = request.resource_owner  # type: ignore[attr-defined]
        return JsonResponse({"email": getattr(access, "email", None)})


class DrfMeView(APIView):
    """Django REST framework with django-oauth-toolkit's OAuth2Authentication."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({"email": request.user.email, "client_id": request.auth.application.client_id})
