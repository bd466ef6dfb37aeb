"""URLs that replace ``oauth2_provider.urls`` (same ``oauth2_provider`` namespace).

Mount under the prefix you used for django-oauth-toolkit::

    path("o/", include("delegation_idp.urls")),
    path("", include("delegation_idp.wellknown_urls")),

The authorization, token, introspection and revocation endpoints are this app's (subclasses
of django-oauth-toolkit's views, behind one guard). django-oauth-toolkit's device-flow routes
(RFC 8628: clients would authenticate there outside the guard) are not mounted, and its
``management_urlpatterns``
(``/o/applications/...``, where any signed-in user registers a client with a
``client_id`` of their choosing) are never mounted: self-service registration is
RFC 7591 dynamic client registration at ``register/``, answered only when the site
sets ``DELEGATION_IDP["CLIENT_REGISTRATION"] = "dcr"`` (:mod:`delegation_idp.provider.registration`).
"""

from django.urls import path

from delegation_idp.ciba.views import BackchannelAuthenticationView
from delegation_idp.provider import approvals, authorization, registration, status_list_views, views

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", authorization.AuthorizationView.as_view(), name="authorize"),
    path("token/", views.TokenView.as_view(), name="token"),
    path("introspect/", views.IntrospectionView.as_view(), name="introspect"),
    path("revoke_token/", views.RevokeTokenView.as_view(), name="revoke-token"),
    # OpenID CIBA (poll mode): an agent asks for the user's approval; the user decides there.
    path("bc-authorize/", BackchannelAuthenticationView.as_view(), name="backchannel-authentication"),
    path("approvals/", approvals.ApprovalListView.as_view(), name="approvals"),
    path("approvals/<uuid:pk>/", approvals.ApprovalDecisionView.as_view(), name="approval"),
    # Token Status Lists (draft-ietf-oauth-status-list): the aggregation and each list.
    path("statuslists/", status_list_views.StatusListAggregationView.as_view(), name="status-lists"),
    path("statuslists/<str:slug>", status_list_views.StatusListView.as_view(), name="status-list"),
    path("register/", registration.RegistrationView.as_view(), name="dcr-register"),
    path(
        "register/<str:client_id>/",
        registration.RegistrationManagementView.as_view(),
        name="dcr-register-management",
    ),
]
