from django.urls import include, path

from .resource_api import PaymentsView, TasksView

urlpatterns = [
    path("api/tasks/", TasksView.as_view(), name="tasks"),
    path("api/payments/", PaymentsView.as_view(), name="payments"),
    path("", include("delegation_idp.resource_server.urls")),  # RFC 9728 metadata
]
