from django.urls import include, path

from .resource_api import TasksView

urlpatterns = [
    path("api/tasks/", TasksView.as_view(), name="tasks"),
    path("", include("delegation_idp.resource_server.urls")),  # RFC 9728 metadata
]
