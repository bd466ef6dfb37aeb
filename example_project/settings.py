"""A small but real identity site that uses delegation_idp.

Deployment settings come from the environment:

* ``DATABASE_URL``: any URL dj-database-url understands (default: SQLite file ``db.sqlite3``).
* ``DATABASE_TIMEOUT``: seconds a request may wait on the database (SQLite's lock, PostgreSQL's
  connect, statement and lock timeouts) before it answers 503 (default 5; 0: no limit, for
  ``migrate`` and other long commands).
* ``DATABASE_CONN_MAX_AGE``: persistent connection lifetime in seconds (default 60; 0: one per request).
* ``IDP_ISSUER``: the issuer identifier (default ``http://127.0.0.1:8000``).
* ``CELERY_BROKER_URL``: the Celery broker; unset, tasks run eagerly in-process.
* ``REDIS_URL``: Django's cache (throttling, shared state) and the revocation set; unset, local memory.
* ``IDP_KEY_ENCRYPTION_KEYS``: comma-separated Fernet keys that encrypt signing keys at rest.
  Unset in DEBUG, a development key is generated once into ``var/dev-kek``.
* ``IDP_CLIENT_SECRET_HMAC_KEY``: at least 32 random characters keying the HMAC-SHA256 under which
  generated agent client secrets are stored. Unset in DEBUG, a development key is generated once into
  ``var/dev-client-secret-hmac-key``; unset otherwise, agent secrets keep the slow password hash.
* ``IDP_OIDC_RSA_PRIVATE_KEY_FILE`` (or ``IDP_OIDC_RSA_PRIVATE_KEY``, the PEM itself): the RSA key
  that signs OpenID Connect ID tokens (django-oauth-toolkit's ``OIDC_RSA_PRIVATE_KEY``), the same in
  every process; ``IDP_OIDC_RSA_INACTIVE_KEY_FILES``: comma-separated PEM files of retired keys whose
  ID tokens still verify. Unset in DEBUG, a development key is generated once into
  ``var/dev-oidc-rsa-key.pem``; unset otherwise, OpenID Connect is off (no ``openid`` scope).
* ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG`` (default on), ``DJANGO_ALLOWED_HOSTS``.
* ``IDP_KEY_ROTATION_PERIOD``, ``IDP_JWKS_CACHE_SECONDS``, ``IDP_KEY_CACHE_SECONDS``: key timings (s).
* ``CELERY_BEAT_SCHEDULE_FILENAME``: where beat keeps its state (default ``var/celerybeat-schedule``).
* ``CELERY_VISIBILITY_TIMEOUT``: seconds after which a task of a dead worker is redelivered (900).
* ``IDP_REVOCATION_PUBLISH_SECONDS``: how often beat rewrites the Redis revocation set (60).
* ``IDP_BREAKER_RESET_SECONDS``: how long a failing Redis is left alone before one probe (15).
* ``IDP_DPOP_NONCE_LIFETIME``: seconds each DPoP nonce of the token endpoint lives (RFC 9449
  section 8); unset, no nonce is required. Every process derives the same nonces from the secret key.
* ``IDP_METRICS`` (default off), ``IDP_METRICS_TOKEN``, ``IDP_METRICS_ALLOWED_ADDRESSES``: Prometheus
  metrics at ``/metrics``; ``PROMETHEUS_MULTIPROC_DIR`` for several gunicorn workers.

In production (see docs/deployment.md) set ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` and
``CELERY_BROKER_URL``: without them the cache is per process and tasks run in the web process.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from delegation_idp.conf import rotation_check_seconds

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or ("dev-only-not-secret" if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")
ALLOWED_HOSTS = [
    h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",
    "delegation_idp",
    "example_project.demo_services",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A sign-in refused by the lockout answers 429 with a page that says so.
    "delegation_idp.provider.signin.SignInLockoutMiddleware",
]

# Django's ModelBackend behind the sign-in lockout: every password check from a
# locked-out (username, address) or address is refused before the password is hashed.
AUTHENTICATION_BACKENDS = ["delegation_idp.provider.signin.SignInLockoutModelBackend"]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example_project" / "templates"],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,  # a persistent connection broken by a database restart is replaced
    )
}
_DATABASE_TIMEOUT = int(os.environ.get("DATABASE_TIMEOUT", "5"))  # seconds
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers take the lock when their transaction begins (not on its first write, where a
    # deferred transaction that cannot upgrade its lock fails at once with "database is
    # locked"), and wait for it up to the timeout; past it the endpoints answer 503.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": _DATABASE_TIMEOUT or 86400}  # 0: no limit
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _DATABASE_TIMEOUT:
    # A database that is down, hung or partitioned costs a bounded wait, then a 503:
    # connecting (libpq connect_timeout), a statement or a lock wait on a live server
    # (statement_timeout, lock_timeout), and unacknowledged data on a broken network
    # (tcp_user_timeout, keepalives). Options already in DATABASE_URL win. DATABASE_TIMEOUT=0
    # (migrations and other long commands) sets none of them: libpq's and the server's defaults.
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

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    # Short socket timeouts: with Redis down, requests fail over to "no cache" quickly.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

ISSUER = os.environ.get("IDP_ISSUER", "http://127.0.0.1:8000").rstrip("/")


def _key_encryption_keys() -> list[str]:
    configured = [k.strip() for k in os.environ.get("IDP_KEY_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    if configured or not DEBUG:
        return configured
    from cryptography.fernet import Fernet

    path = BASE_DIR / "var" / "dev-kek"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return [path.read_text().strip()]


def _client_secret_hmac_key() -> str | None:
    configured = os.environ.get("IDP_CLIENT_SECRET_HMAC_KEY", "").strip()
    if configured or not DEBUG:
        return configured or None
    import secrets

    path = BASE_DIR / "var" / "dev-client-secret-hmac-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _oidc_rsa_private_key() -> str:
    """The PEM of the RSA key that signs ID tokens: from the environment, or in DEBUG one generated
    once for every process (created under a temporary name, then linked into place: of two
    processes starting together, both read the one that was linked first)."""
    configured = os.environ.get("IDP_OIDC_RSA_PRIVATE_KEY", "").strip()
    if configured:
        return configured
    path_name = os.environ.get("IDP_OIDC_RSA_PRIVATE_KEY_FILE", "").strip()
    if path_name:
        return Path(path_name).read_text()
    if not DEBUG:
        return ""
    path = BASE_DIR / "var" / "dev-oidc-rsa-key.pem"
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        path.parent.mkdir(parents=True, exist_ok=True)
        pem = rsa.generate_private_key(public_exponent=65537, key_size=3072).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        # Created readable by its owner only, before a byte of the key is written.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process linked its key first: that one is used
        finally:
            temporary.unlink()
    return path.read_text()


_oidc_rsa_key = _oidc_rsa_private_key()
_oidc_inactive_keys = [
    Path(name.strip()).read_text()
    for name in os.environ.get("IDP_OIDC_RSA_INACTIVE_KEY_FILES", "").split(",")
    if name.strip()
]

OAUTH2_PROVIDER = {
    "OAUTH2_SERVER_CLASS": "delegation_idp.provider.server.DelegationServer",
    "OAUTH2_VALIDATOR_CLASS": "delegation_idp.provider.validators.DelegationValidator",
    "OAUTH2_BACKEND_CLASS": "delegation_idp.provider.backends.DelegationOAuthLibCore",
    "ACCESS_TOKEN_GENERATOR": "delegation_idp.provider.tokens.generate_access_token",
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "PKCE_REQUIRED": True,
    "SCOPES": {
        "tasks.read": "Read your tasks",
        "tasks.write": "Change your tasks",
        "profile": "Know who you are",
        **({"openid": "Sign you in (OpenID Connect)"} if _oidc_rsa_key else {}),
    },
    "DEFAULT_SCOPES": ["tasks.read"],
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"] if not DEBUG else ["http", "https"],
    # RFC 9700 (OAuth 2.0 Security BCP), django-oauth-toolkit's gates (docs/security.md):
    # no implicit or password grant, S256-only PKCE, no access token in a query string,
    # RFC 9207 `iss` in every authorization response.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    # Not yet: hashed storage works with the JWTs (rows are found by token_checksum), but
    # the admin and the tests still look rows up by `token` (docs/security.md).
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": False,
    # ... and its configuration gates: `check --deploy` errors on a value RFC 9700 advises
    # against (http redirect URIs, wildcards, PKCE optional, refresh-token replay undetected).
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    # Clients that register themselves (docs/self-registered-clients.md): client ID metadata
    # documents, as the MCP authorization specification prefers, and RFC 7591 registration
    # for signed-in developers. Both admit a client only where a registration rule (admin)
    # names its host, and such a client may reach only what those rules allow.
    "CIMD_ENABLED": True,
    "CIMD_REGISTRATION_PERMISSION_CLASSES": (
        "delegation_idp.provider.self_registered.RegistrationRulePermission",
    ),
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.IsAuthenticatedDCRPermission",),
    # OpenID Connect (docs/id-jag.md): a sign-in with scope=openid gets an ID token, RS256, whose
    # iss is DELEGATION_IDP["ISSUER"]; DelegationServer offers the authorization-code flow only.
    "OIDC_ENABLED": bool(_oidc_rsa_key),
    "OIDC_RSA_PRIVATE_KEY": _oidc_rsa_key,
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": _oidc_inactive_keys,
}

DELEGATION_IDP = {
    "ISSUER": ISSUER,
    "KEY_ENCRYPTION_KEYS": _key_encryption_keys(),
    "SUBJECT_RESOLVER": "delegation_idp.provider.tokens.email_subject",
    "REVOCATION_REDIS_URL": REDIS_URL,
    "CLIENT_SECRET_HMAC_KEY": _client_secret_hmac_key(),
    "CLIENT_REGISTRATION": "dcr",
}
for _option in (
    "KEY_ROTATION_PERIOD",
    "JWKS_CACHE_SECONDS",
    "KEY_CACHE_SECONDS",
    "BREAKER_RESET_SECONDS",
    "DPOP_NONCE_LIFETIME",
    "STATUS_LIST_PUBLISH_DELAY",
    "STATUS_LIST_TTL",
    "STATUS_LIST_SIZE",
    "STATUS_LIST_BLOCK_SIZE",
):
    if os.environ.get(f"IDP_{_option}"):
        DELEGATION_IDP[_option] = int(os.environ[f"IDP_{_option}"])

# Token-endpoint throttling, shared through CACHES: IDP_THROTTLE_RATES="client=600/min,address=1200/min".
if os.environ.get("IDP_THROTTLE_RATES"):
    DELEGATION_IDP["THROTTLE_RATES"] = dict(
        rate.split("=", 1) for rate in os.environ["IDP_THROTTLE_RATES"].split(",") if "=" in rate
    )

# Prometheus metrics at /metrics (docs/deployment.md, "Metrics"): IDP_METRICS=1, protected by
# IDP_METRICS_TOKEN (a bearer token) and/or IDP_METRICS_ALLOWED_ADDRESSES ("10.0.0.0/8,127.0.0.1").
DELEGATION_IDP["METRICS"] = env_bool("IDP_METRICS", False)
DELEGATION_IDP["METRICS_TOKEN"] = os.environ.get("IDP_METRICS_TOKEN") or None
DELEGATION_IDP["METRICS_ALLOWED_ADDRESSES"] = [
    a.strip() for a in os.environ.get("IDP_METRICS_ALLOWED_ADDRESSES", "").split(",") if a.strip()
]

# Celery: a real broker when CELERY_BROKER_URL is set, eager in-process otherwise.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task whose worker died is delivered again within minutes, not kombu's default hour.
# On Redis, a message taken but not yet acknowledged waits in an "unacked" set; a sweep
# (``restore_visible``) puts it back on its queue once it is older than the visibility
# timeout. The timeout must exceed the longest task, or a running task is delivered twice
# (every task here is idempotent, so that is waste, not harm): rotation takes seconds, the
# sweep and the publication work in batches (SWEEP_BATCH_SIZE) and take minutes at most on
# large tables. 15 minutes (CELERY_VISIBILITY_TIMEOUT, seconds) leaves room.
CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "900"))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # The worker's event loop runs the sweep every unacked_restore_interval seconds and, with
    # throttle 1, scans each time (kombu's defaults scan every 10 x 10 s). A tenth of the
    # visibility timeout, at most a minute: a dead worker's task is back within 1.1 x the timeout.
    "unacked_restore_interval": max(1, min(60, CELERY_VISIBILITY_TIMEOUT // 10)),
    "unacked_restore_throttle": 1,
    # A hung Redis (accepting connections, answering nothing) must not block a publisher or
    # the health check forever; 5 s is far above the 1 s blocking poll of a consuming worker.
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
# A prefork child killed mid-task (OOM killer, SIGKILL): the message goes back to the queue at
# once instead of being acknowledged as failed.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get(
    "CELERY_BEAT_SCHEDULE_FILENAME", str(BASE_DIR / "var" / "celerybeat-schedule")
)
CELERY_BEAT_SCHEDULE = {
    # Every KEY_ROTATION_CHECK_SECONDS (default: one JWKS cache lifetime); idempotent.
    "rotate-signing-keys": {
        "task": "delegation_idp.tasks.rotate_keys",
        "schedule": rotation_check_seconds(DELEGATION_IDP),
    },
    "sweep-expired-tokens": {"task": "delegation_idp.tasks.sweep_expired", "schedule": 3600.0},
    "publish-revocations": {
        "task": "delegation_idp.tasks.publish_revocations",
        "schedule": float(os.environ.get("IDP_REVOCATION_PUBLISH_SECONDS", "60")),
    },
    # Token Status Lists: a revocation is in the signed list within STATUS_LIST_PUBLISH_DELAY.
    "publish-status-lists": {
        "task": "delegation_idp.tasks.publish_status_lists",
        "schedule": float(DELEGATION_IDP.get("STATUS_LIST_PUBLISH_DELAY", 60)),
    },
    "retire-status-lists": {"task": "delegation_idp.tasks.retire_status_lists", "schedule": 3600.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "delegation_idp": {"handlers": ["console"], "level": os.environ.get("IDP_LOG_LEVEL", "INFO")},
        # Unhandled errors (500s) reach stderr with DEBUG off too; Django's default only mails admins.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # load balancers probe over plain HTTP
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# django-oauth-toolkit's swappable models, named so migrations can resolve them.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
