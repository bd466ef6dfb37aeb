"""The benchmark's baseline: a stock django-oauth-toolkit site, with nothing of this project.

What a user comparing products would install: Django, django-oauth-toolkit with its
defaults (no ``OAUTH2_PROVIDER`` setting: DOT's own server, validator and opaque
tokens) and DOT's ``oauth2_provider.urls`` under ``/o/`` (token view at ``/o/token/``).
Only the apps DOT needs. DEBUG off.

``BENCH_STOCK_MIDDLEWARE`` picks the middleware: ``bare`` (none, the default) or
``typical`` (the list ``django-admin startproject`` generates). bench.run serves the
same database from one instance of each.

The database is configured as the project's bench site configures its own
(bench/settings.py over example_project/settings.py), from the same environment:
``DATABASE_URL``, ``DATABASE_CONN_MAX_AGE`` (default 60) with health checks; on SQLite
the options of bench/dbconf.py, on PostgreSQL the example site's timeouts
(``DATABASE_TIMEOUT``, default 5 s). tests/perf/test_stock_site.py checks that the two
settings give the same ``DATABASES`` apart from the database name.
"""

import os

import dj_database_url

from bench.dbconf import SQLITE_OPTIONS

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = [
    *(h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h),
    "testserver",  # bench.inprocess (Django's test client), as bench/settings.py allows it
]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "oauth2_provider",
]

# Django's startproject template, verbatim (tests/perf/test_stock_site.py compares them).
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE_VARIANTS = {"bare": [], "typical": STARTPROJECT_MIDDLEWARE}
MIDDLEWARE = list(MIDDLEWARE_VARIANTS[os.environ.get("BENCH_STOCK_MIDDLEWARE", "bare")])

ROOT_URLCONF = "bench.stock_urls"
WSGI_APPLICATION = "bench.stock_wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ["DATABASE_URL"],
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
_DATABASE_TIMEOUT = int(os.environ.get("DATABASE_TIMEOUT", "5"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = dict(SQLITE_OPTIONS)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _DATABASE_TIMEOUT:
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", _DATABASE_TIMEOUT)
    _options.setdefault(
        "options",
        f"-c statement_timeout={_DATABASE_TIMEOUT * 1000} -c lock_timeout={_DATABASE_TIMEOUT * 1000}",
    )
    _options.setdefault("tcp_user_timeout", _DATABASE_TIMEOUT * 1000)
    _options.setdefault("keepalives", 1)
    _options.setdefault("keepalives_idle", _DATABASE_TIMEOUT)
    _options.setdefault("keepalives_interval", 1)
    _options.setdefault("keepalives_count", 3)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
