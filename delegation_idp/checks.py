"""Django system checks (``manage.py check``; security gates with ``--deploy``).

Ids are stable: ``delegation_idp.E0xx`` for errors, ``delegation_idp.W0xx`` for warnings.

Why one module over 400 lines: every check of the app is registered here, in one place,
as Django's own ``core/checks`` modules and django-oauth-toolkit's ``checks.py`` keep them;
each check is a short function with its docstring, and an operator looks ids up in one file.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import oauthlib
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections, router
from django.db.migrations.loader import MigrationLoader
from django.urls import NoReverseMatch, resolve, reverse
from django.utils.module_loading import import_string
from django.views.debug import SafeExceptionReporterFilter
from oauth2_provider.settings import oauth2_settings

from delegation_idp.conf import DEFAULTS, SETTING_NAME, idp_settings
from delegation_idp.jose import ASYMMETRIC_ALGORITHMS, JoseError, rsa_verification_keys
from delegation_idp.models import DelegationRule
from delegation_idp.provider import policy_triggers as triggers
from delegation_idp.provider import registration, self_registered
from delegation_idp.provider.backends import DelegationOAuthLibCore
from delegation_idp.provider.discovery import ServerMetadataView
from delegation_idp.provider.server import DelegationServer
from delegation_idp.provider.signin import (
    BACKEND,
    MIDDLEWARE,
    MODEL_BACKEND,
    SignInLockoutBackend,
    SignInLockoutMiddleware,
)
from delegation_idp.provider.tokens import generate_access_token
from delegation_idp.provider.validators import DelegationValidator
from delegation_idp.provider.views import TokenView

SYMMETRIC = {"HS256", "HS384", "HS512", "none"}


@register(Tags.database)
def check_policy_triggers(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Warning]:
    """The per-process policy cache needs the version triggers (migration 0002). Without
    them the cache switches itself off (correct, but every exchange reads the policy);
    this says so. Database checks run with ``migrate`` and ``check --database``."""

    if not databases or not idp_settings.POLICY_CACHE:
        return []
    alias = router.db_for_read(DelegationRule)
    if alias not in databases:
        return []
    connection = connections[alias]
    if connection.vendor not in triggers.VENDORS:
        return []
    try:
        if _migrations_pending(connection) or triggers.installed(connection):
            return []  # not migrated yet (migrate installs them), or in place
    except DatabaseError:
        return []
    return [
        Warning(
            f"The policy version triggers are missing on database {alias!r}: the policy cache is off "
            "and every token exchange reads the policy from the database.",
            hint="Re-create them with manage.py install_policy_triggers (a migration that rebuilt a "
            "policy table on SQLite drops them; ALTER TABLE ... DISABLE TRIGGER disables them).",
            id="delegation_idp.W003",
        )
    ]


def _migrations_pending(connection: Any) -> bool:
    """Whether some migration of this app is not applied on ``connection`` (the migrations
    install the triggers, each one those of the tables it creates)."""

    loader = MigrationLoader(connection, ignore_no_migrations=True)
    ours = {key for key in loader.graph.nodes if key[0] == "delegation_idp"}
    return bool(ours - set(loader.applied_migrations))


@register(Tags.security)
def check_hooks(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """django-oauth-toolkit must be pointed at this app's server, validator,
    backend and token generator, or the grant is missing or tokens are not JWTs."""

    errors: list[Error] = []
    hooks = [
        ("OAUTH2_SERVER_CLASS", DelegationServer, "delegation_idp.provider.server.DelegationServer", "E001"),
        (
            "OAUTH2_VALIDATOR_CLASS",
            DelegationValidator,
            "delegation_idp.provider.validators.DelegationValidator",
            "E002",
        ),
        (
            "OAUTH2_BACKEND_CLASS",
            DelegationOAuthLibCore,
            "delegation_idp.provider.backends.DelegationOAuthLibCore",
            "E003",
        ),
    ]
    for name, expected, path, code in hooks:
        try:
            value = getattr(oauth2_settings, name)
        except ImportError as exc:
            errors.append(
                Error(
                    f"OAUTH2_PROVIDER['{name}'] cannot be imported: {exc}",
                    hint=f"Set OAUTH2_PROVIDER['{name}'] = '{path}' (or a subclass).",
                    id=f"delegation_idp.{code}",
                )
            )
            continue
        if not (isinstance(value, type) and issubclass(value, expected)):
            errors.append(
                Error(
                    f"OAUTH2_PROVIDER['{name}'] does not point at delegation_idp.",
                    hint=f"Set OAUTH2_PROVIDER['{name}'] = '{path}' (or a subclass).",
                    id=f"delegation_idp.{code}",
                )
            )
    try:
        generator = oauth2_settings.EXTRA_SERVER_KWARGS.get(
            "token_generator", oauth2_settings.ACCESS_TOKEN_GENERATOR
        )
    except ImportError:
        generator = None
    if generator is not generate_access_token:
        errors.append(
            Error(
                "OAUTH2_PROVIDER['ACCESS_TOKEN_GENERATOR'] is not delegation_idp's JWT generator.",
                hint="Set it to 'delegation_idp.provider.tokens.generate_access_token'.",
                id="delegation_idp.E004",
            )
        )
    return errors


def _is_lockout_middleware(path: str) -> bool:
    """Whether a MIDDLEWARE entry is the sign-in lockout middleware, by any of its dotted paths."""
    try:
        middleware = import_string(path)
    except ImportError:
        return False
    return isinstance(middleware, type) and issubclass(middleware, SignInLockoutMiddleware)


@register(Tags.security)
def check_sign_in_lockout(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Wrong passwords are counted without configuration, but only the backend, first in
    AUTHENTICATION_BACKENDS, refuses a locked-out sign-in (authenticate() stops at the first
    backend that returns a user), and only the middleware tells the user why."""

    if not (idp_settings.SIGN_IN_FAILURE_LIMIT or idp_settings.SIGN_IN_ADDRESS_FAILURE_LIMIT):
        return []
    messages: list[Warning] = []
    backends = list(getattr(settings, "AUTHENTICATION_BACKENDS", []))
    try:
        first = import_string(backends[0]) if backends else None
    except ImportError:
        first = None
    if not (isinstance(first, type) and issubclass(first, SignInLockoutBackend)):
        messages.append(
            Warning(
                "User sign-in has no brute-force protection: the sign-in lockout backend is not "
                "the first authentication backend.",
                hint=f"Replace ModelBackend with {MODEL_BACKEND!r}, or put {BACKEND!r} first in "
                "AUTHENTICATION_BACKENDS (docs/installation.md).",
                id="delegation_idp.W004",
            )
        )
    if not any(_is_lockout_middleware(entry) for entry in getattr(settings, "MIDDLEWARE", None) or []):
        messages.append(
            Warning(
                "A locked-out sign-in reads as a wrong password: the sign-in lockout middleware "
                "is not installed.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE (docs/installation.md).",
                id="delegation_idp.W005",
            )
        )
    return messages


@register(Tags.compatibility)
def check_option_names(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A misspelt option is otherwise ignored silently and its default applies."""

    unknown = sorted(set(idp_settings.user_settings) - set(DEFAULTS))
    return [
        Warning(
            f"{SETTING_NAME}[{name!r}] is not an option of delegation_idp; it is ignored.",
            hint="The options and their defaults are listed in delegation_idp.conf.DEFAULTS.",
            id="delegation_idp.W002",
        )
        for name in unknown
    ]


@register(Tags.security)
def check_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Private signing keys are encrypted at rest with keys that are not SECRET_KEY."""
    keks = idp_settings.KEY_ENCRYPTION_KEYS
    if not keks:
        return [
            Error(
                "DELEGATION_IDP['KEY_ENCRYPTION_KEYS'] is empty: signing keys cannot be stored.",
                hint="Generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())' and load it from the environment.",
                id="delegation_idp.E005",
            )
        ]
    errors = []
    for index, kek in enumerate(keks):
        try:
            Fernet(kek)
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"KEY_ENCRYPTION_KEYS[{index}] is not a Fernet key (urlsafe base64 of 32 bytes).",
                    hint="Use Fernet.generate_key().",
                    id="delegation_idp.E006",
                )
            )
        if kek == getattr(settings, "SECRET_KEY", None):
            errors.append(
                Error(
                    "A key-encryption key equals SECRET_KEY.",
                    hint="Use an independent key: SECRET_KEY leaks in more ways than a dedicated key.",
                    id="delegation_idp.E007",
                )
            )
    return errors


@register(Tags.urls)
def check_issuer_and_urls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The issuer is an absolute URL whose metadata lives at this site's root, and the
    token endpoint is this app's view (it carries the limits and the audit trail)."""

    issuer = idp_settings.ISSUER
    errors: list[CheckMessage] = []
    parts = urlsplit(issuer or "")
    if (
        not issuer
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
    ):
        errors.append(
            Error(
                "DELEGATION_IDP['ISSUER'] must be an absolute URL without query or fragment.",
                hint="For example 'https://idp.example.com'.",
                id="delegation_idp.E008",
            )
        )
        return errors
    if parts.path not in ("", "/"):
        errors.append(
            Error(
                "DELEGATION_IDP['ISSUER'] has a path, but metadata is served at the site root.",
                hint="RFC 8414 section 3: an issuer with a path needs its metadata at "
                "/.well-known/oauth-authorization-server/<path>; use an issuer without a path.",
                id="delegation_idp.E009",
            )
        )
    try:
        metadata_path = reverse("delegation_idp:metadata")
        token_path = reverse("oauth2_provider:token")
    except NoReverseMatch:
        errors.append(
            Error(
                "delegation_idp's URLs are not included.",
                hint="Add path('o/', include('delegation_idp.urls')) and "
                "path('', include('delegation_idp.wellknown_urls')) to the root URLconf.",
                id="delegation_idp.E010",
            )
        )
        return errors
    if metadata_path != "/.well-known/oauth-authorization-server":
        errors.append(
            Error(
                "The metadata route is not at the site root, so it does not match the issuer.",
                hint="Include delegation_idp.wellknown_urls at the root: path('', include(...)).",
                id="delegation_idp.E011",
            )
        )
    # An earlier route (django-oauth-toolkit's own metadata view, say) can shadow
    # ours; its document would derive the issuer from the request instead.
    well_known = "/.well-known/oauth-authorization-server"
    if metadata_path == well_known and getattr(resolve(well_known).func, "view_class", None) is not (
        ServerMetadataView
    ):
        errors.append(
            Error(
                "/.well-known/oauth-authorization-server is served by another view, whose "
                "issuer need not match DELEGATION_IDP['ISSUER'].",
                hint="Remove django-oauth-toolkit's metadata routes (oauth2_provider.urls' "
                "metadata_urlpatterns) or include delegation_idp.wellknown_urls before them.",
                id="delegation_idp.E017",
            )
        )
    oidc_issuer = oauth2_settings.OIDC_ISS_ENDPOINT
    if oidc_issuer and oidc_issuer.rstrip("/") != issuer.rstrip("/"):
        errors.append(
            Error(
                "OAUTH2_PROVIDER['OIDC_ISS_ENDPOINT'] differs from DELEGATION_IDP['ISSUER'].",
                hint="One provider has one issuer (RFC 8414 section 3.3): set both to the same URL.",
                id="delegation_idp.E018",
            )
        )
    if getattr(resolve(token_path).func, "view_class", None) is not TokenView:
        errors.append(
            Error(
                "oauth2_provider:token does not resolve to delegation_idp's token view.",
                hint="Include delegation_idp.urls instead of oauth2_provider.urls.",
                id="delegation_idp.E012",
            )
        )
    hosts = getattr(settings, "ALLOWED_HOSTS", [])
    if (
        not settings.DEBUG
        and parts.hostname
        and "*" not in hosts
        and not any(parts.hostname == h or (h.startswith(".") and parts.hostname.endswith(h)) for h in hosts)
    ):
        errors.append(
            Warning(
                "The issuer's host is not in ALLOWED_HOSTS.",
                hint="Requests to the issuer would be refused.",
                id="delegation_idp.W001",
            )
        )
    return errors


@register(Tags.security, Tags.urls)
def check_client_registration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """No user may choose a client's identity. django-oauth-toolkit's management views
    (``/applications/register/``) let every signed-in user pick a ``client_id``, and its
    dynamic client registration with a permission class that admits anonymous requests
    lets anyone register; both are refused. Self-service is ``CLIENT_REGISTRATION = "dcr"``
    with ``DCR_ENABLED`` and authenticated registrants (the server picks the client id)."""

    errors: list[CheckMessage] = []
    try:
        reverse("oauth2_provider:register")
    except NoReverseMatch:
        pass
    else:
        errors.append(
            Error(
                "django-oauth-toolkit's application management views are mounted: any signed-in "
                "user can register a client and choose its client_id.",
                hint="Remove oauth2_provider.urls' management_urlpatterns (include delegation_idp.urls "
                "instead of oauth2_provider.urls); for self-service registration set "
                "DELEGATION_IDP['CLIENT_REGISTRATION'] = 'dcr' and OAUTH2_PROVIDER['DCR_ENABLED'] = True.",
                id="delegation_idp.E022",
            )
        )
    if oauth2_settings.DCR_ENABLED:
        anonymous = registration.anonymous_may_register(oauth2_settings.DCR_REGISTRATION_PERMISSION_CLASSES)
        if anonymous:
            errors.append(
                Error(
                    f"Dynamic client registration admits anonymous registrants ({', '.join(anonymous)}).",
                    hint="Keep DCR_REGISTRATION_PERMISSION_CLASSES at "
                    "oauth2_provider.dcr.IsAuthenticatedDCRPermission (or a stricter class). Silence "
                    "this check only if open registration is intended.",
                    id="delegation_idp.E023",
                )
            )
    value = idp_settings.CLIENT_REGISTRATION
    if value not in (None, registration.DCR):
        errors.append(
            Error(
                f"DELEGATION_IDP['CLIENT_REGISTRATION'] is {value!r}.",
                hint="Use None (self-service registration off) or 'dcr'.",
                id="delegation_idp.E024",
            )
        )
    elif value == registration.DCR and not oauth2_settings.DCR_ENABLED:
        errors.append(
            Warning(
                "CLIENT_REGISTRATION is 'dcr' but OAUTH2_PROVIDER['DCR_ENABLED'] is off: "
                "registration stays closed.",
                hint="Set OAUTH2_PROVIDER['DCR_ENABLED'] = True as well.",
                id="delegation_idp.W006",
            )
        )
    if oauth2_settings.CIMD_ENABLED and not any(
        issubclass(cls, self_registered.RegistrationRulePermission)
        for cls in oauth2_settings.CIMD_REGISTRATION_PERMISSION_CLASSES or ()
        if isinstance(cls, type)
    ):
        errors.append(
            Warning(
                "CIMD_ENABLED without the registration-rule permission: the provider fetches a "
                "client ID metadata document from any host a client names, and registers it.",
                hint="Set OAUTH2_PROVIDER['CIMD_REGISTRATION_PERMISSION_CLASSES'] to "
                "('delegation_idp.provider.self_registered.RegistrationRulePermission',) and add "
                "registration rules in the admin (docs/self-registered-clients.md).",
                id="delegation_idp.W007",
            )
        )
    return errors


@register(Tags.security)
def check_policy_options(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Asymmetric signing only (RFC 8725 section 3.1), and bounded chains."""
    errors = []
    algorithms = {idp_settings.SIGNING_ALGORITHM, *idp_settings.ALLOWED_ALGORITHMS}
    if algorithms & SYMMETRIC:
        errors.append(
            Error(
                "Symmetric or 'none' signing algorithms are configured.",
                hint="Resource servers verify with public keys; use ES256, RS256 or EdDSA.",
                id="delegation_idp.E013",
            )
        )

    if not algorithms <= ASYMMETRIC_ALGORITHMS | SYMMETRIC:
        errors.append(
            Error(
                "Unknown signing algorithm configured.",
                hint=f"Use one of {sorted(ASYMMETRIC_ALGORITHMS)}.",
                id="delegation_idp.E014",
            )
        )
    if idp_settings.SIGNING_ALGORITHM not in idp_settings.ALLOWED_ALGORITHMS:
        errors.append(
            Error(
                "SIGNING_ALGORITHM is not in ALLOWED_ALGORITHMS.",
                hint="Add it to the allow-list.",
                id="delegation_idp.E015",
            )
        )
    depth = idp_settings.MAX_DELEGATION_DEPTH
    if not isinstance(depth, int) or not 1 <= depth <= 32:
        errors.append(
            Error(
                "MAX_DELEGATION_DEPTH must be between 1 and 32.",
                hint="The default is 5.",
                id="delegation_idp.E016",
            )
        )
    lifetime = idp_settings.ID_JAG_LIFETIME
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 10 <= lifetime <= 600:
        # An ID-JAG is a bearer grant redeemed at once (draft-ietf-oauth-identity-assertion-
        # authz-grant section 7): a long-lived one is a long window for a stolen one.
        errors.append(
            Error(
                "ID_JAG_LIFETIME must be a whole number of seconds between 10 and 600.",
                hint="The default is 300 (5 minutes).",
                id="delegation_idp.E036",
            )
        )
    return errors


@register(Tags.security)
def check_oidc_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """With django-oauth-toolkit's OpenID Connect on, ``OIDC_RSA_PRIVATE_KEY`` (and every key of
    ``OIDC_RSA_PRIVATE_KEYS_INACTIVE``) must be an RSA key of 2048 bits or more: it signs the ID
    tokens, and an ID token subject of an ID-JAG request is verified with its public part."""
    if not oauth2_settings.OIDC_ENABLED:
        return []
    pems = [oauth2_settings.OIDC_RSA_PRIVATE_KEY, *oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE]
    try:
        # Each distinct PEM one key (a key listed as current and as inactive counts once).
        distinct = tuple(dict.fromkeys(pems))
        usable = bool(pems[0]) and len(rsa_verification_keys(distinct)) == len(distinct)
    except (JoseError, TypeError):
        usable = False
    if usable:
        return []
    return [
        Error(
            "OIDC_ENABLED, but OIDC_RSA_PRIVATE_KEY is unset, or it or a key of "
            "OIDC_RSA_PRIVATE_KEYS_INACTIVE is no PEM-encoded RSA key of 2048 bits or more.",
            hint="Set OAUTH2_PROVIDER['OIDC_RSA_PRIVATE_KEY'] to the PEM of an RSA key, the same in "
            "every process (the example site reads IDP_OIDC_RSA_PRIVATE_KEY_FILE).",
            id="delegation_idp.E037",
        )
    ]


# RFC 9700 gates of django-oauth-toolkit whose absence this provider does not tolerate:
# (setting, check id, what is accepted without it, why that is an error here).
RFC9700_REQUIRED = (
    (
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD",
        "delegation_idp.E019",
        "the PKCE 'plain' method is accepted",
        "RFC 9700 section 2.1.1: 'plain' exposes the verifier in the authorization request, "
        "which PKCE exists to keep secret.",
    ),
    (
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT",
        "delegation_idp.E020",
        "the resource owner password credentials grant is accepted",
        "RFC 9700 section 2.4: it MUST NOT be used; any client registered for it collects "
        "users' passwords, with no consent.",
    ),
    (
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS",
        "delegation_idp.E021",
        "authorization responses carry no 'iss'",
        "RFC 9207 / RFC 9700 section 4.4: without it clients of several providers (MCP "
        "clients among them) cannot detect mix-up attacks.",
    ),
)


@register(Tags.security)
def check_dpop(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """DPoP (RFC 9449): proofs are signed with asymmetric keys only (section 4.2), and the
    cache that remembers their ``jti`` does remember (section 11.1)."""
    errors = []
    algorithms = set(idp_settings.DPOP_SIGNING_ALGORITHMS)
    if not algorithms or not algorithms <= ASYMMETRIC_ALGORITHMS:
        errors.append(
            Error(
                "DPOP_SIGNING_ALGORITHMS must list asymmetric algorithms only, and at least one.",
                hint=f"Use some of {sorted(ASYMMETRIC_ALGORITHMS)}.",
                id="delegation_idp.E025",
            )
        )
    for name in ("DPOP_NONCE_LIFETIME", "RESOURCE_DPOP_NONCE_LIFETIME"):
        lifetime = getattr(idp_settings, name)
        if lifetime is not None and (
            isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1
        ):
            errors.append(
                Error(
                    f"{name} must be None or a whole number of seconds, at least 1.",
                    hint="A nonce lives that long; 300 is a common choice.",
                    id="delegation_idp.E029",
                )
            )
    alias = idp_settings.DPOP_REPLAY_CACHE_ALIAS
    backend = getattr(settings, "CACHES", {}).get(alias, {}).get("BACKEND", "")
    if (
        alias not in getattr(settings, "CACHES", {})
        or backend == "django.core.cache.backends.dummy.DummyCache"
    ):
        errors.append(
            Error(
                f"DPOP_REPLAY_CACHE_ALIAS {alias!r} is not a cache that remembers: every DPoP proof "
                "could be replayed.",
                hint="Name a configured cache (Redis in production), not DummyCache.",
                id="delegation_idp.E026",
            )
        )
    return errors


def _whole(value: Any, low: int, high: int | None = None) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int)
        and value >= low
        and (high is None or value <= high)
    )


@register(Tags.security)
def check_approvals(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The user in the loop (OpenID CIBA): bounded waits and polling, a bounded
    ``authorization_details`` size, a list of detail types, an absolute https approval page
    URL, a plain From address and a bound on the requests waiting for one user."""
    lifetime, interval = idp_settings.APPROVAL_REQUEST_LIFETIME, idp_settings.APPROVAL_POLL_INTERVAL
    size, types = idp_settings.MAX_AUTHORIZATION_DETAILS_BYTES, idp_settings.AUTHORIZATION_DETAILS_TYPES
    url, sender = idp_settings.APPROVAL_URL, idp_settings.APPROVAL_EMAIL_FROM
    pending = idp_settings.APPROVAL_MAX_PENDING
    parts = urlsplit(url) if isinstance(url, str) else None
    if (
        _whole(lifetime, 10, 86400)
        and _whole(interval, 1, 60)
        and _whole(size, 64, 65536)
        and _whole(pending, 1, 1000)
        and isinstance(types, list | tuple)
        and all(isinstance(t, str) and t for t in types)
        and (url is None or (parts is not None and parts.scheme == "https" and bool(parts.netloc)))
        and (sender is None or (isinstance(sender, str) and "\n" not in sender and "@" in sender))
    ):
        return []
    return [
        Error(
            "The approval options are out of bounds: APPROVAL_REQUEST_LIFETIME 10..86400 seconds, "
            "APPROVAL_POLL_INTERVAL 1..60, MAX_AUTHORIZATION_DETAILS_BYTES 64..65536, "
            "AUTHORIZATION_DETAILS_TYPES a list of names, APPROVAL_URL None or an absolute https URL, "
            "APPROVAL_EMAIL_FROM None or an email address, APPROVAL_MAX_PENDING 1..1000.",
            hint="The defaults are 300, 5, 4096, [] (any type), None, None and 10.",
            id="delegation_idp.E038",
        )
    ]


@register(Tags.security)
def check_status_lists(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Token Status Lists (draft-ietf-oauth-status-list): the list geometry that keeps every
    entry unique (a block size dividing a power-of-two list), the publication timings that bound
    how late a revocation reaches verifiers, and the resource side's modes and limits."""
    errors = []
    size, block = idp_settings.STATUS_LIST_SIZE, idp_settings.STATUS_LIST_BLOCK_SIZE
    if not (
        _whole(size, 1 << 10, 1 << 24)
        and _whole(block, 1, 1 << 16)
        and size & (size - 1) == 0
        and block & (block - 1) == 0
        and block <= size
    ):
        errors.append(
            Error(
                "STATUS_LIST_SIZE and STATUS_LIST_BLOCK_SIZE must be powers of two, the size within "
                "1024..16777216 and the block no larger than it.",
                hint="The defaults are 1048576 and 256.",
                id="delegation_idp.E030",
            )
        )
    delay, ttl = idp_settings.STATUS_LIST_PUBLISH_DELAY, idp_settings.STATUS_LIST_TTL
    lifetime = idp_settings.STATUS_LIST_TOKEN_LIFETIME
    if not (_whole(delay, 1, 3600) and _whole(ttl, 1, 86400) and _whole(lifetime, 2, 7 * 86400)) or (
        lifetime <= 2 * ttl
    ):
        errors.append(
            Error(
                "STATUS_LIST_PUBLISH_DELAY (1..3600), STATUS_LIST_TTL (1..86400) and "
                "STATUS_LIST_TOKEN_LIFETIME (more than twice the ttl) must be whole seconds.",
                hint="A revocation reaches verifiers within the delay plus one ttl (defaults: 60, 60, 3600).",
                id="delegation_idp.E031",
            )
        )
    modes = idp_settings.RESOURCE_REVOCATION_MODES
    known = ("status_list", "redis", "introspection")
    if modes is not None and (
        isinstance(modes, str) or not modes or not set(modes) <= set(known) or len(set(modes)) != len(modes)
    ):
        errors.append(
            Error(
                "RESOURCE_REVOCATION_MODES must be None or a list of distinct modes among "
                f"{', '.join(known)}.",
                hint='For example ["status_list"], or ["redis", "introspection"].',
                id="delegation_idp.E032",
            )
        )
    limits = (
        idp_settings.RESOURCE_STATUS_LIST_MAX_BYTES,
        idp_settings.RESOURCE_STATUS_LIST_MAX_DECOMPRESSED_BYTES,
        idp_settings.RESOURCE_STATUS_LIST_STALE_SECONDS,
    )
    if not (_whole(limits[0], 1024, 16 << 20) and _whole(limits[1], 128, 64 << 20)) or not (
        isinstance(limits[2], int | float) and not isinstance(limits[2], bool) and 0 <= limits[2] <= 86400
    ):
        errors.append(
            Error(
                "The resource side's status-list limits are out of bounds: RESOURCE_STATUS_LIST_MAX_BYTES "
                "1 KiB..16 MiB, RESOURCE_STATUS_LIST_MAX_DECOMPRESSED_BYTES 128 B..64 MiB, "
                "RESOURCE_STATUS_LIST_STALE_SECONDS 0..86400.",
                hint="Unbounded limits let one list exhaust the service's memory (a ZLIB bomb).",
                id="delegation_idp.E033",
            )
        )
    prefixes = idp_settings.RESOURCE_STATUS_LIST_URI_PREFIXES
    if (
        isinstance(prefixes, str)
        or not isinstance(prefixes, list | tuple)
        or not all(_list_prefix(p) for p in prefixes)
    ):
        errors.append(
            Error(
                "RESOURCE_STATUS_LIST_URI_PREFIXES must be a list of absolute http(s) URLs, each "
                "ending in '/'.",
                hint='For example ["https://lists.example.com/statuslists/"]; without the final "/" '
                '"https://lists.example.com" would also match "https://lists.example.com.evil.test".',
                id="delegation_idp.E034",
            )
        )
    return errors


def _list_prefix(prefix: Any) -> bool:
    if not isinstance(prefix, str) or not prefix.endswith("/"):
        return False
    parts = urlsplit(prefix)
    return (
        parts.scheme in ("https", "http") and bool(parts.hostname) and not parts.query and not parts.fragment
    )


def _check_status_lists_deploy() -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if not idp_settings.STATUS_LIST and idp_settings.ISSUER:
        warnings.append(
            Warning(
                "STATUS_LIST is off: tokens carry no status reference, so a resource server that is "
                "not on the provider's Redis learns of a revocation only through introspection.",
                hint="Keep STATUS_LIST on (docs/status-list.md).",
                id="delegation_idp.W107",
            )
        )
    if idp_settings.RESOURCE_STATUS_LIST_FAIL_OPEN:
        warnings.append(
            Warning(
                "RESOURCE_STATUS_LIST_FAIL_OPEN is on: while the provider's status list cannot be "
                "fetched or verified, revoked tokens are accepted.",
                hint="Fail closed (the default) unless availability matters more than revocation.",
                id="delegation_idp.W108",
            )
        )
    return warnings


@register(Tags.security)
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The metrics view serves only requests that pass a protection (an allowed address, a
    bearer token); with metrics on and neither set it answers no one, which is a mistake
    to say at once rather than leave to a scraper's 403s. An allow-list entry that is not an
    address or a network allows nothing, silently, so it is refused here."""
    if not idp_settings.METRICS:
        return []
    errors = []
    entries = idp_settings.METRICS_ALLOWED_ADDRESSES or []
    token = idp_settings.METRICS_TOKEN
    if not entries and not token:
        errors.append(
            Error(
                "METRICS is on, but neither METRICS_ALLOWED_ADDRESSES nor METRICS_TOKEN is set: "
                "the metrics view refuses every request.",
                hint="List the scrapers' addresses or networks, or set a bearer token (both: both apply).",
                id="delegation_idp.E027",
            )
        )
    invalid = []
    for entry in entries if isinstance(entries, list | tuple) else [entries]:
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            invalid.append(entry)
    if invalid:
        errors.append(
            Error(
                f"METRICS_ALLOWED_ADDRESSES must list IP addresses or networks; {invalid!r} are not.",
                hint='For example ["127.0.0.1", "10.0.0.0/8"].',
                id="delegation_idp.E028",
            )
        )
    if token is not None and not isinstance(token, str):
        errors.append(
            Error(
                "METRICS_TOKEN must be a string or None.",
                hint="A random string the scraper sends as Authorization: Bearer.",
                id="delegation_idp.E028",
            )
        )
    return errors


@register(Tags.security)
def check_rfc9700(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """django-oauth-toolkit's RFC 9700 gates that keep the MUSTs (S256-only PKCE, no
    password grant, RFC 9207 ``iss``) must be on. They default to off in 3.x, so a site
    installed before this check would otherwise keep accepting what the BCP forbids.
    The SHOULDs are django-oauth-toolkit's own ``check --deploy`` warnings."""
    return [
        Error(
            f"OAUTH2_PROVIDER['{name}'] is off: {what}.",
            hint=f"{why} Set OAUTH2_PROVIDER['{name}'] = True.",
            id=check_id,
        )
        for name, check_id, what, why in RFC9700_REQUIRED
        if not getattr(oauth2_settings, name)
    ]


@register(Tags.security, deploy=True)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Production gates: https issuer, bounded lifetimes, secrets out of error reports."""
    errors: list[CheckMessage] = []
    issuer = idp_settings.ISSUER or ""
    if not settings.DEBUG and not issuer.startswith("https://"):
        errors.append(
            Error(
                "The issuer is not https.",
                hint="Tokens and client secrets need TLS.",
                id="delegation_idp.E101",
            )
        )
    lifetime = int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
    if not 60 <= lifetime <= 86400 or not 10 <= int(idp_settings.EXCHANGED_TOKEN_LIFETIME) <= 3600:
        errors.append(
            Error(
                "Token lifetimes are out of bounds.",
                hint="ACCESS_TOKEN_EXPIRE_SECONDS within 60..86400, "
                "EXCHANGED_TOKEN_LIFETIME within 10..3600.",
                id="delegation_idp.E102",
            )
        )
    filter_path = getattr(settings, "DEFAULT_EXCEPTION_REPORTER_FILTER", "")
    if filter_path and filter_path != "django.views.debug.SafeExceptionReporterFilter":
        if not issubclass(import_string(filter_path), SafeExceptionReporterFilter):
            errors.append(
                Error(
                    "The exception reporter filter does not hide sensitive POST parameters.",
                    hint="subject_token, actor_token and client_assertion must never reach error reports.",
                    id="delegation_idp.E103",
                )
            )

    if oauthlib.get_debug():
        errors.append(
            Error(
                "oauthlib debug mode is on: its request objects then log bodies, tokens included.",
                hint="Do not call oauthlib.set_debug(True) in production.",
                id="delegation_idp.E104",
            )
        )
    errors += _check_throttle_cache()
    errors += _check_secret_hashing()
    errors += _check_dpop_replay_cache()
    errors += _check_id_jag_replay_cache()
    errors += _check_status_lists_deploy()
    token = idp_settings.METRICS_TOKEN
    if idp_settings.METRICS and isinstance(token, str) and token and len(token) < 32:
        errors.append(
            Warning(
                "METRICS_TOKEN is shorter than 32 characters.",
                hint="Use a random token, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
                id="delegation_idp.W106",
            )
        )
    if (
        oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
        and "http" in oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
    ):
        errors.append(
            Warning(
                "http redirect URIs are allowed.",
                hint="Allow only https in production.",
                id="delegation_idp.W101",
            )
        )
    return errors


PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def _check_secret_hashing() -> list[CheckMessage]:
    """Without a keyed-hash key, every agent authentication runs Django's password
    hasher (PBKDF2, about a quarter of a second of CPU) at every hop of every chain."""
    if idp_settings.CLIENT_SECRET_HMAC_KEY:
        return []
    return [
        Warning(
            "CLIENT_SECRET_HMAC_KEY is not set: agent client secrets use the slow password hasher.",
            hint="Set DELEGATION_IDP['CLIENT_SECRET_HMAC_KEY'] to at least 32 random bytes from the "
            "environment (docs/performance.md).",
            id="delegation_idp.W103",
        )
    ]


REDIS_CACHES = ("django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache")


def _socket_timeout(options: dict[str, Any]) -> bool:
    """Whether a Redis cache's options bound both the connect and the read wait."""
    django = options.get("socket_timeout") and options.get("socket_connect_timeout")
    django_redis = options.get("SOCKET_TIMEOUT") and options.get("SOCKET_CONNECT_TIMEOUT")
    return bool(django or django_redis)


def _check_dpop_replay_cache() -> list[CheckMessage]:
    """A proof replayed at another process is caught only if every process shares the cache
    that remembers proof ``jti`` values."""
    alias = idp_settings.DPOP_REPLAY_CACHE_ALIAS
    backend = getattr(settings, "CACHES", {}).get(alias, {}).get("BACKEND", "")
    if backend != "django.core.cache.backends.locmem.LocMemCache":
        return []
    return [
        Warning(
            f"DPoP proof jti values are remembered in the process-local cache {alias!r}: a proof "
            "used at one process can be replayed at another.",
            hint="Point DPOP_REPLAY_CACHE_ALIAS at a shared cache (Redis).",
            id="delegation_idp.W105",
        )
    ]


def _check_id_jag_replay_cache() -> list[CheckMessage]:
    """An ID-JAG redeemed at one process is refused at another only if every process shares
    the cache that remembers ID-JAG ``jti`` values (draft-ietf-oauth-identity-assertion-authz-
    grant section 5.1, RFC 7523 section 3)."""
    alias = idp_settings.ID_JAG_REPLAY_CACHE_ALIAS
    backend = getattr(settings, "CACHES", {}).get(alias, {}).get("BACKEND", "")
    if backend != "django.core.cache.backends.locmem.LocMemCache":
        return []
    return [
        Warning(
            f"ID-JAG jti values are remembered in the process-local cache {alias!r}: an ID-JAG "
            "redeemed at one process can be redeemed again at another.",
            hint="Point ID_JAG_REPLAY_CACHE_ALIAS at a shared cache (Redis).",
            id="delegation_idp.W109",
        )
    ]


def _check_throttle_cache() -> list[CheckMessage]:
    """Throttling and the authentication-failure lockout count in the cache; a
    process-local cache lets every worker process grant the full rate again, and a Redis
    cache without socket timeouts lets a hung Redis hold every request."""
    if not idp_settings.THROTTLE_RATES:
        return []
    alias = idp_settings.THROTTLE_CACHE_ALIAS
    config = getattr(settings, "CACHES", {}).get(alias, {})
    backend = config.get("BACKEND", "")
    if backend in REDIS_CACHES and not _socket_timeout(config.get("OPTIONS") or {}):
        return [
            Warning(
                f"The throttle cache {alias!r} has no socket timeout: a hung Redis (stopped, or "
                "behind a network that drops packets) would hold requests until the worker dies.",
                hint="Set OPTIONS socket_timeout and socket_connect_timeout (about 1 second; "
                "django-redis: SOCKET_TIMEOUT, SOCKET_CONNECT_TIMEOUT). The circuit breaker then "
                "makes a hung Redis cost one such wait per process (docs/security.md, Faults).",
                id="delegation_idp.W104",
            )
        ]
    if backend not in PROCESS_LOCAL_CACHES:
        return []
    return [
        Warning(
            f"Token-endpoint throttling counts in the process-local cache {alias!r}.",
            hint="Point the cache at Redis (django.core.cache.backends.redis.RedisCache) so every "
            "process shares one count, or set THROTTLE_CACHE_ALIAS to a shared cache.",
            id="delegation_idp.W102",
        )
    ]
