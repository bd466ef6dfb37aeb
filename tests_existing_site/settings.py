"""An existing Django identity site that adopts delegation_idp.

It has its own user model (email as ``USERNAME_FIELD``, no ``username``) and
its own django-oauth-toolkit Application model, both defined before
delegation_idp arrived. The only lines delegation_idp adds are marked
``# delegation_idp``: the app in ``INSTALLED_APPS``, the four hooks and two
RFC 9700 gates in ``OAUTH2_PROVIDER``, check E020 silenced (its legacy web client
still uses the password grant, which the metadata then lists), the ``DELEGATION_IDP``
setting, the URL includes, and the sign-in lockout backend and middleware.

Existing clients keep django-oauth-toolkit's opaque tokens
(``JWT_ACCESS_TOKENS = "agents"``); only registered agents get JWTs.
``DATABASE_URL`` switches to PostgreSQL, as in ``tests.settings``.
"""

import os

import dj_database_url

DEBUG = False
SECRET_KEY = "existing-site-tests-only-not-secret"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "oauth2_provider",
    "tests_existing_site.accounts",
    "delegation_idp",  # delegation_idp
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "delegation_idp.signin.SignInLockoutMiddleware",  # delegation_idp
]

AUTHENTICATION_BACKENDS = [
    "delegation_idp.signin.SignInLockoutModelBackend"
]  # delegation_idp: was ModelBackend

ROOT_URLCONF = "tests_existing_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
    base_name = os.environ.get("TEST_DATABASE_NAME", "test_delegation_idp")
    DATABASES["default"]["TEST"] = {"NAME": f"{base_name}_existing_site"}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
TIME_ZONE = "UTC"
LOGIN_URL = "/login/"

AUTH_USER_MODEL = "accounts.User"
OAUTH2_PROVIDER_APPLICATION_MODEL = "accounts.ClientApplication"

# The site's django-oauth-toolkit options as they were, plus the four hooks.
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read", "write": "Write", "tasks.read": "Read tasks", "tasks.write": "Change tasks"},
    "DEFAULT_SCOPES": ["read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "OAUTH2_SERVER_CLASS": "delegation_idp.server.DelegationServer",  # delegation_idp
    "OAUTH2_VALIDATOR_CLASS": "delegation_idp.validators.DelegationValidator",  # delegation_idp
    "OAUTH2_BACKEND_CLASS": "delegation_idp.backends.DelegationOAuthLibCore",  # delegation_idp
    "ACCESS_TOKEN_GENERATOR": "delegation_idp.claims.generate_access_token",  # delegation_idp
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,  # delegation_idp (check E019)
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,  # delegation_idp (check E021)
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["oauth2_provider.contrib.rest_framework.OAuth2Authentication"],
}

# delegation_idp
DELEGATION_IDP = {
    "ISSUER": "http://testserver",
    "KEY_ENCRYPTION_KEYS": ["ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="],
    "SUBJECT_RESOLVER": "delegation_idp.claims.email_subject",
    "JWT_ACCESS_TOKENS": "agents",
    "THROTTLE_RATES": {},
}

# delegation_idp: the legacy web client still uses the password grant (RFC 9700 section 2.4
# says it MUST NOT); silenced knowingly until that client moves to the code flow.
SILENCED_SYSTEM_CHECKS = ["delegation_idp.E020"]

CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = None
LOGGING = {"version": 1, "disable_existing_loggers": False}
