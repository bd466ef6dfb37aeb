"""The example site (the provider) plus a test resource server API on the same test server."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from delegation_idp.resource_server import drf
from example_project.demo_services.resource_api import describe
from example_project.urls import urlpatterns as site


class Api(APIView):
    authentication_classes = [drf.DelegatedTokenAuthentication]
    permission_classes = [drf.HasScopes]
    required_scopes = ("tasks.read",)

    def get(self, request):
        return Response(
            {**describe(request.auth), "user": request.user.get_username(), "jkt": request.auth.jkt}
        )


def api(name, permissions, **attributes):
    view = type(name, (Api,), {"permission_classes": permissions, **attributes})
    return view.as_view()


urlpatterns = [
    path("api/whoami/", api("WhoAmI", [drf.HasScopes])),
    path("api/admin/", api("Admin", [drf.HasScopes.of("tasks.read", "tasks.admin")])),
    path("api/direct/", api("Direct", [drf.DirectUserOnly])),
    path("api/shallow/", api("Shallow", [drf.MaxDelegationDepth], max_delegation_depth=2)),
    path("api/deep/", api("Deep", [drf.MaxDelegationDepth.of(3)])),
    path(
        "api/trusted/",
        api(
            "Trusted",
            [drf.AllowedActors],
            allowed_actors=["https://agent1.example.com", "https://agent2.example.com"],
        ),
    ),
    path("api/no-agent2/", api("NoAgent2", [drf.ForbiddenActors.of("https://agent2.example.com")])),
    path("api/combined/", api("Combined", [drf.HasScopes & drf.MaxDelegationDepth.of(3)])),
    path("", include("delegation_idp.resource_server.urls")),
    *site,
]
