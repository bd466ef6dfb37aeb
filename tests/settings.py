"""Test settings: the example site, with an in-memory SQLite database by default.

``DATABASE_URL`` switches the whole suite to another database (CI runs it on
PostgreSQL). Client secrets are hashed with a fast hasher here only, so the
suite does not spend minutes in PBKDF2; production keeps Django's default.
"""

import os
from pathlib import Path

import dj_database_url

from example_project.settings import *  # noqa: F403
from example_project.settings import DELEGATION_IDP, OAUTH2_PROVIDER

DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_delegation_idp")}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

TEST_KEK = "ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="
DELEGATION_IDP = {
    **DELEGATION_IDP,
    "ISSUER": "http://testserver",
    "KEY_ENCRYPTION_KEYS": [TEST_KEK],
    "REVOCATION_REDIS_URL": None,
    "THROTTLE_RATES": {},
}
# OpenID Connect on, with a test-only RSA key (the same in every process the suite starts).
TEST_OIDC_RSA_KEY = (Path(__file__).resolve().parent / "support" / "oidc-test-key.pem").read_text()
OAUTH2_PROVIDER = {
    **OAUTH2_PROVIDER,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "SCOPES": {**OAUTH2_PROVIDER["SCOPES"], "openid": "Sign you in (OpenID Connect)"},
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": TEST_OIDC_RSA_KEY,
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [],
}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = None
LOGGING = {"version": 1, "disable_existing_loggers": False}
