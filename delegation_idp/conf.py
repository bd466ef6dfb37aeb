"""The app's options, read from the one namespaced ``DELEGATION_IDP`` setting.

Modelled on Django REST framework's ``api_settings``: defaults live in
``DEFAULTS``, dotted paths listed in ``IMPORT_STRINGS`` are imported on first
access, and the cache is dropped when tests or code change the setting.
Nothing else in the package reads ``django.conf.settings`` for these options::

    from delegation_idp.conf import idp_settings
    idp_settings.MAX_DELEGATION_DEPTH
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

SETTING_NAME = "DELEGATION_IDP"

DEFAULTS: dict[str, Any] = {
    # The issuer identifier (RFC 8414 section 2): an https URL without query or
    # fragment. It is the exact `iss` of every token. Required.
    "ISSUER": None,
    # Signing: algorithm of newly generated keys and the allow-list accepted on
    # verification. Symmetric algorithms are refused by a system check.
    "SIGNING_ALGORITHM": "ES256",
    "ALLOWED_ALGORITHMS": ["ES256", "RS256", "EdDSA"],
    # Fernet keys (urlsafe base64 of 32 bytes) that encrypt private signing keys
    # at rest. The first encrypts; all of them decrypt, so a key-encryption key
    # can be rotated by prepending a new one. Never derived from SECRET_KEY.
    "KEY_ENCRYPTION_KEYS": [],
    # Key life cycle (seconds). A new key is published as `next` for
    # JWKS_CACHE_SECONDS before it signs; a retired key stays published until every
    # token it signed has expired plus KEY_CACHE_SECONDS, CLOCK_SKEW_SECONDS and JWKS_CACHE_SECONDS.
    "KEY_ROTATION_PERIOD": 7 * 24 * 3600,
    "JWKS_CACHE_SECONDS": 300,
    # How often a process may reload keys from the database after meeting an unknown `kid`.
    "KEY_RELOAD_MIN_INTERVAL": 5,
    # How long a process trusts its in-memory copy of the key set.
    "KEY_CACHE_SECONDS": 30,
    # How often beat runs the rotation task (seconds); None: once per JWKS_CACHE_SECONDS.
    "KEY_ROTATION_CHECK_SECONDS": None,
    "CLOCK_SKEW_SECONDS": 30,
    # Which applications get JWT access tokens: "all", or "agents" (registered
    # parties only, other applications keep django-oauth-toolkit's opaque tokens).
    # JWT_CLIENT_IDS opts further applications in by client_id.
    "JWT_ACCESS_TOKENS": "all",
    "JWT_CLIENT_IDS": [],
    # Self-service client registration: None (off), or "dcr" for django-oauth-toolkit's
    # RFC 7591 dynamic client registration at <prefix>/register/ (needs its DCR_ENABLED too),
    # which generates every client_id. Never django-oauth-toolkit's /applications/ views.
    "CLIENT_REGISTRATION": None,
    # Maps a user to the `sub` claim. Called with the user; returns a string, never one
    # starting with "urn:delegation-idp:client:" (reserved for tokens without a user).
    "SUBJECT_RESOLVER": "delegation_idp.provider.tokens.default_subject",
    # Lifetime cap of an exchanged token; it never outlives its subject token either.
    "EXCHANGED_TOKEN_LIFETIME": 600,
    # Lifetime of an ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant), seconds: short,
    # since it is redeemed at once; it never outlives its subject token either.
    "ID_JAG_LIFETIME": 300,
    # Redeeming ID-JAGs (the RFC 7523 jwt-bearer grant, delegation_idp.rfc7523) from the trusted
    # issuers an admin registered: the fetcher of their JWKS (a class whose fetch(url) returns
    # (document, max_age); django-oauth-toolkit's SSRF-hardened CIMD fetcher: https only, public
    # addresses only, no redirects, its CIMD size and time limits), how soon an unknown kid may
    # refetch an issuer's keys (seconds, shared by every process through the cache), and the cache
    # alias that remembers redeemed jti values (shared by every process: Redis in production).
    "ID_JAG_JWKS_FETCHER": "oauth2_provider.cimd.SafeMetadataFetcher",
    "ID_JAG_JWKS_REFRESH_INTERVAL": 30,
    "ID_JAG_REPLAY_CACHE_ALIAS": "default",
    # The user in the loop (OpenID CIBA, poll mode; delegation_idp.ciba): how long an approval
    # request waits for its user when its rule does not say (seconds), the polling interval
    # the provider asks for (seconds; CIBA's default is 5), the RFC 9396 authorization_details
    # types accepted (empty: any type), their largest encoded size (bytes, checked before
    # parsing), and the email sent to the user when a request arrives: None (none, only the
    # approval_requested signal) or the From address of a message sent through Django's
    # email backend to the user's email. APPROVAL_URL is the approval page's absolute URL
    # for that message and for signal receivers (None: ISSUER's origin + the page's path).
    # APPROVAL_MAX_PENDING bounds the requests one client keeps waiting for one user.
    "APPROVAL_REQUEST_LIFETIME": 300,
    "APPROVAL_POLL_INTERVAL": 5,
    "AUTHORIZATION_DETAILS_TYPES": [],
    "MAX_AUTHORIZATION_DETAILS_BYTES": 4096,
    "APPROVAL_EMAIL_FROM": None,
    "APPROVAL_URL": None,
    "APPROVAL_MAX_PENDING": 10,
    # Keep parties and rules per process, keyed by the policy version row that database
    # triggers change on every policy write (SQLite and PostgreSQL). False: read every request.
    "POLICY_CACHE": True,
    # Delegation chain rules.
    "MAX_DELEGATION_DEPTH": 5,
    "ALLOW_REPEATED_ACTORS": False,
    # Input limits, applied before any parsing.
    "MAX_TOKEN_BYTES": 8192,
    "MAX_HEADER_BYTES": 1024,
    "MAX_REQUEST_BYTES": 32768,
    "MAX_JSON_DEPTH": 16,
    # Redis URL for the revocation set published to resource servers; None disables it.
    "REVOCATION_REDIS_URL": None,
    "REVOCATION_REDIS_PREFIX": "delegation_idp:revoked:",
    # Longest wait (seconds) of an issuance for the row locks it re-checks (parties, user,
    # signing key, parent) on PostgreSQL; past it the token request answers 503 and may retry.
    # A rotation or revocation stalled while holding a lock (a frozen worker) cannot stall issuance.
    "ISSUANCE_LOCK_TIMEOUT": 3,
    # Retention of lineage and audit records after a token expired (seconds).
    "LINEAGE_RETENTION_SECONDS": 30 * 24 * 3600,
    "SWEEP_BATCH_SIZE": 1000,
    # Retention of audit events (seconds); None keeps them forever.
    "AUDIT_RETENTION_SECONDS": None,
    # Token endpoint throttling, shared through Django's cache. None disables.
    "THROTTLE_RATES": {"client": "600/min", "address": "1200/min"},
    "THROTTLE_CACHE_ALIAS": "default",
    # Addresses or networks of the site's own proxies (load balancers): behind them, the
    # throttles and lockouts count the address they forwarded in X-Forwarded-For, not theirs.
    # Empty: REMOTE_ADDR, as the WSGI server gives it.
    "TRUSTED_PROXIES": [],
    "CLIENT_AUTH_FAILURE_LIMIT": 10,
    "CLIENT_AUTH_FAILURE_WINDOW": 60,
    # Circuit breakers on the cache, the broker and the revocation set (per process): after a
    # failure or timeout, callers take their fallback at once for this long (seconds), then
    # one call probes. A hung Redis costs one socket timeout per process per period.
    "BREAKER_RESET_SECONDS": 15,
    # User sign-in (every django.contrib.auth.authenticate(): the login page, the admin,
    # the password grant): wrong passwords per (username, address) and per address within
    # the window before that pair, or that address, is refused until the window ends.
    # None disables either count.
    "SIGN_IN_FAILURE_LIMIT": 5,
    "SIGN_IN_ADDRESS_FAILURE_LIMIT": 10,
    "SIGN_IN_FAILURE_WINDOW": 900,
    # Generated agent client secrets are stored as HMAC-SHA256 keyed with this
    # secret (256-bit random secrets need no slow hashing). None: fall back to
    # django-oauth-toolkit's password hasher.
    "CLIENT_SECRET_HMAC_KEY": None,
    # Longest time a private_key_jwt client assertion (RFC 7523) is good, seconds: after its iat,
    # or (without iat) its exp - now. Its jti is remembered that long.
    "CLIENT_ASSERTION_MAX_LIFETIME": 300,
    # The audit sink: a callable taking the audit record's fields; default writes the database.
    "AUDIT_WRITER": "delegation_idp.audit.write_event",
    # Retry-After (seconds) of the 503 temporarily_unavailable that every endpoint answers when
    # the database fails (delegation_idp.provider.resilience).
    "UNAVAILABLE_RETRY_AFTER": 1,
    # Health endpoint: checks whose failure answers 503 (others only "degraded"), and the broker timeout.
    "HEALTH_REQUIRED_CHECKS": ["database"],
    "HEALTH_CHECK_TIMEOUT": 2,
    # DPoP (RFC 9449), at the token endpoint and on the resource side: the proof algorithms
    # (asymmetric only: a system check refuses others), how old a proof's iat may be (seconds;
    # CLOCK_SKEW_SECONDS is allowed ahead), and the cache alias that remembers proof jti values
    # (shared by every process: Redis in production; a system check refuses a per-process cache).
    "DPOP_SIGNING_ALGORITHMS": ["ES256", "ES384", "EdDSA", "PS256", "RS256"],
    "DPOP_PROOF_MAX_AGE": 60,
    "DPOP_REPLAY_CACHE_ALIAS": "default",
    # Server-provided nonces at the token endpoint (RFC 9449 section 8): None (not required),
    # or how long each nonce lives (seconds). Every process derives the same nonces from
    # DPOP_NONCE_SECRET (None: derived from SECRET_KEY), so any process accepts any's nonce.
    "DPOP_NONCE_LIFETIME": None,
    "DPOP_NONCE_SECRET": None,
    # Prometheus metrics (delegation_idp.provider.metrics; docs/deployment.md, "Metrics"): counted,
    # and served by MetricsView, only when METRICS is True (otherwise the view is a 404). The view
    # answers a request only if it passes every protection set: a source address (as
    # TRUSTED_PROXIES resolves it) in METRICS_ALLOWED_ADDRESSES (addresses or networks), and an
    # `Authorization: Bearer` equal to METRICS_TOKEN. With neither set it answers no one (E027).
    "METRICS": False,
    "METRICS_ALLOWED_ADDRESSES": [],
    "METRICS_TOKEN": None,
    # Also count requests per client id (delegation_idp_requests_by_client_total): one series per
    # client, so off by default. Only ids the client proved (see the docs) become label values.
    "METRICS_CLIENT_ID_LABELS": False,
    # Token Status List (draft-ietf-oauth-status-list; docs/status-list.md): every JWT access
    # token carries `status.status_list` {idx, uri} when True. Lists hold STATUS_LIST_SIZE
    # entries (a power of two), handed out in blocks of STATUS_LIST_BLOCK_SIZE per process.
    # A revocation is re-signed into the list within STATUS_LIST_PUBLISH_DELAY seconds (the
    # beat period of delegation_idp.tasks.publish_status_lists; also queued at each
    # revocation); verifiers cache a list for STATUS_LIST_TTL seconds, and a signed list
    # expires after STATUS_LIST_TOKEN_LIFETIME. STATUS_LIST_BASE_URL: where the lists are
    # served (None: the issuer's origin and this app's URL); STATUS_LIST_SECRET derives each
    # list's URI and index permutation (None: from SECRET_KEY).
    "STATUS_LIST": True,
    "STATUS_LIST_SIZE": 1 << 20,
    "STATUS_LIST_BLOCK_SIZE": 256,
    "STATUS_LIST_PUBLISH_DELAY": 60,
    "STATUS_LIST_TTL": 60,
    "STATUS_LIST_TOKEN_LIFETIME": 3600,
    "STATUS_LIST_BASE_URL": None,
    "STATUS_LIST_SECRET": None,
    # Resource-server side (delegation_idp.resource_server); ISSUER, ALLOWED_ALGORITHMS, CLOCK_SKEW_SECONDS,
    # JWKS_CACHE_SECONDS, KEY_RELOAD_MIN_INTERVAL, MAX_* and REVOCATION_REDIS_* apply there too.
    # This service's identity URI: a token's `aud` must contain it (or one of its resource URLs).
    "RESOURCE_SERVER_URI": None,
    # The URL clients use for it: the `resource` its RFC 9728 metadata names, also accepted as
    # `aud`. None derives the origin from the request (a host ALLOWED_HOSTS lists literally).
    "RESOURCE_URL": None,
    # Further paths (e.g. "/api/tasks/") that are resources of their own, each with its
    # path-suffixed RFC 9728 document; the path of RESOURCE_URL counts without being listed.
    "RESOURCE_PATHS": [],
    # Its RFC 9728 metadata URL, named in WWW-Authenticate challenges; None: the document of
    # the resource the request falls under.
    "RESOURCE_METADATA_URL": None,
    # Scopes listed in its RFC 9728 metadata.
    "RESOURCE_SCOPES_SUPPORTED": [],
    # RFC 7662 introspection: "never", "fallback" (Redis unset or unreachable) or "always".
    "RESOURCE_INTROSPECTION": "never",
    # The resource server's client credentials at the provider's introspection endpoint.
    "RESOURCE_CLIENT_ID": None,
    "RESOURCE_CLIENT_SECRET": None,
    # A revocation set whose heartbeat is older than this (seconds) counts as unavailable; None: unchecked.
    "RESOURCE_REVOCATION_MAX_AGE": None,
    # How revocation is checked: None (the Redis set when REVOCATION_REDIS_URL is set, and
    # RESOURCE_INTROSPECTION), or a list of "status_list", "redis", "introspection": every one
    # listed is asked ("introspection" with "redis" only when Redis cannot answer).
    "RESOURCE_REVOCATION_MODES": None,
    # Status lists: a list that cannot be fetched or verified refuses tokens (503) unless
    # RESOURCE_STATUS_LIST_FAIL_OPEN; a cached list is used up to STALE_SECONDS past its ttl
    # while it cannot be refreshed; the fetched token and its decompressed list are bounded.
    "RESOURCE_STATUS_LIST_FAIL_OPEN": False,
    "RESOURCE_STATUS_LIST_STALE_SECONDS": 300,
    "RESOURCE_STATUS_LIST_MAX_BYTES": 256 * 1024,
    "RESOURCE_STATUS_LIST_MAX_DECOMPRESSED_BYTES": 2 * 1024 * 1024,
    # The URL prefixes (each an absolute http(s) URL ending in "/") a token's status list
    # may be fetched from; empty: the issuer's origin only. For lists served elsewhere
    # (STATUS_LIST_BASE_URL on another host, a CDN).
    "RESOURCE_STATUS_LIST_URI_PREFIXES": (),
    # DPoP nonces required by this resource server (RFC 9449 section 9): None or a lifetime
    # in seconds, as DPOP_NONCE_LIFETIME; DPOP_SIGNING_ALGORITHMS and DPOP_PROOF_MAX_AGE apply.
    "RESOURCE_DPOP_NONCE_LIFETIME": None,
}

IMPORT_STRINGS = ("SUBJECT_RESOLVER", "AUDIT_WRITER", "ID_JAG_JWKS_FETCHER")


class IdpSettings:
    """Attribute access to ``settings.DELEGATION_IDP`` with defaults and imports."""

    def __init__(self, defaults: dict[str, Any] | None = None, import_strings: tuple[str, ...] = ()):
        self.defaults = defaults or DEFAULTS
        self.import_strings = import_strings or IMPORT_STRINGS
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        if not hasattr(self, "_user_settings"):
            self._user_settings = getattr(settings, SETTING_NAME, {}) or {}
        return self._user_settings

    def __getattr__(self, attr: str) -> Any:
        if attr not in self.defaults:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {attr!r}")
        value = self.user_settings.get(attr, self.defaults[attr])
        if attr in self.import_strings and isinstance(value, str):
            try:
                value = import_string(value)
            except ImportError as exc:
                raise ImportError(f"Could not import {value!r} for {SETTING_NAME}[{attr!r}]: {exc}") from exc
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


idp_settings = IdpSettings(DEFAULTS, IMPORT_STRINGS)


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        # Only itself: what is built from these options (the provider's key set) reloads
        # on this signal too, in its own receiver (delegation_idp.provider.keys).
        idp_settings.reload()


setting_changed.connect(_reload)


def rotation_check_seconds(options: dict[str, Any] | None = None) -> float:
    """The beat period of the rotation task, from ``KEY_ROTATION_CHECK_SECONDS`` or
    else one JWKS cache lifetime (so rotation runs at most that late).

    ``options`` is a ``DELEGATION_IDP`` dict, for a settings module that derives its
    ``CELERY_BEAT_SCHEDULE`` before Django is set up; by default ``idp_settings``.
    """
    if options is None:
        configured, cache = idp_settings.KEY_ROTATION_CHECK_SECONDS, idp_settings.JWKS_CACHE_SECONDS
    else:
        configured = options.get("KEY_ROTATION_CHECK_SECONDS", DEFAULTS["KEY_ROTATION_CHECK_SECONDS"])
        cache = options.get("JWKS_CACHE_SECONDS", DEFAULTS["JWKS_CACHE_SECONDS"])
    return float(configured if configured is not None else cache)
