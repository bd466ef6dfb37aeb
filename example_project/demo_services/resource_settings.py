"""Settings of the seed's resource server: a Django REST framework API that is not
the identity site. It has no database and does not install ``delegation_idp``:
only ``delegation_idp.resource_server`` is used, which needs none of the provider's models.

Environment: ``IDP_ISSUER``, ``RESOURCE_SERVER_URI`` (its identity: the audience the
provider maps its URLs to), optionally ``RESOURCE_URL`` (the URL clients call; unset, the
RFC 9728 metadata derives it from the request, whose host ``ALLOWED_HOSTS`` lists), and
for revocation either ``REDIS_URL`` (the published revocation set) or
``RESOURCE_INTROSPECTION`` with ``RESOURCE_CLIENT_ID``/``RESOURCE_CLIENT_SECRET``.

``/api/tasks/`` is declared a resource of its own, so ``GET /api/tasks/`` without a token
is challenged with ``resource_metadata`` pointing at
``/.well-known/oauth-protected-resource/api/tasks/``, whose ``resource`` is the URL called.
"""

import os

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "resource-server-demo-only")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["rest_framework"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "example_project.demo_services.resource_urls"
DATABASES: dict = {}
USE_TZ = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["delegation_idp.resource_server.drf.DelegatedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["delegation_idp.resource_server.drf.HasScopes"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
DELEGATION_IDP = {
    "ISSUER": os.environ.get("IDP_ISSUER", "http://127.0.0.1:8000").rstrip("/"),
    "RESOURCE_SERVER_URI": os.environ.get("RESOURCE_SERVER_URI", "https://resource-server.example.com"),
    "RESOURCE_URL": os.environ.get("RESOURCE_URL") or None,
    "RESOURCE_PATHS": ["/api/tasks/"],
    "RESOURCE_SCOPES_SUPPORTED": ["tasks.read", "tasks.write"],
    "REVOCATION_REDIS_URL": os.environ.get("REDIS_URL") or None,
    "RESOURCE_INTROSPECTION": os.environ.get("RESOURCE_INTROSPECTION", "never"),
    "RESOURCE_CLIENT_ID": os.environ.get("RESOURCE_CLIENT_ID") or None,
    "RESOURCE_CLIENT_SECRET": os.environ.get("RESOURCE_CLIENT_SECRET") or None,
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
