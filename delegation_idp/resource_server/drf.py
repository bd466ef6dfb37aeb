"""Django REST framework authentication and permissions for resource servers.

One line of settings::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["delegation_idp.resource_server.drf.DelegatedTokenAuthentication"],
    }
    DELEGATION_IDP = {
        "ISSUER": "https://idp.example.com",
        "RESOURCE_SERVER_URI": "https://resource-server.example.com",  # identity: the audience
        "RESOURCE_URL": "https://api.example.com/tasks/",  # the URL clients call (optional)
    }

A token is accepted when its ``aud`` contains the identity URI, or one of the resource
URLs the site's RFC 9728 metadata names (:func:`.metadata.resource_urls_for`: derived
from the request when ``RESOURCE_URL`` is unset). ``request.auth`` is then a
:class:`~delegation_idp.resource_server.validation.DelegatedToken` (subject, scopes,
``jti``, client id, the actor chain nearest first, its depth) and ``request.user`` a
:class:`DelegatedUser`. Refusals carry an RFC 6750
``WWW-Authenticate: Bearer`` challenge with ``error`` and, per RFC 9728 section
5.1, ``resource_metadata``: the document naming the resource the request falls under.

Only :mod:`delegation_idp.conf`, :mod:`delegation_idp.jose` and
:mod:`delegation_idp.core.actchain` are imported from the provider: no models.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from django.core.signals import setting_changed
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from delegation_idp import is_client_subject
from delegation_idp.conf import SETTING_NAME, idp_settings
from delegation_idp.resource_server import metadata
from delegation_idp.resource_server.validation import (
    DelegatedToken,
    ProviderUnavailable,
    ResourceServerConfig,
    TokenError,
    TokenValidator,
)

__all__ = [
    "AllowedActors",
    "DelegatedTokenAuthentication",
    "DelegatedUser",
    "DirectUserOnly",
    "ForbiddenActors",
    "HasScopes",
    "MaxDelegationDepth",
    "bearer_challenge",
    "get_validator",
    "set_validator",
]

# -- the validator this process uses ----------------------------------------------

_lock = threading.Lock()
_validator: TokenValidator | None = None


def config_from_settings() -> ResourceServerConfig:
    """A :class:`ResourceServerConfig` from ``settings.DELEGATION_IDP``."""
    resource = idp_settings.RESOURCE_SERVER_URI
    if not resource:
        raise exceptions.APIException("DELEGATION_IDP['RESOURCE_SERVER_URI'] is not set.")
    return ResourceServerConfig(
        issuer=idp_settings.ISSUER,
        resource=resource,
        # with RESOURCE_URL set, the URLs the metadata names do not depend on the request
        resource_urls=metadata.resource_urls_for(None),
        algorithms=tuple(idp_settings.ALLOWED_ALGORITHMS),
        leeway=idp_settings.CLOCK_SKEW_SECONDS,
        jwks_cache_seconds=idp_settings.JWKS_CACHE_SECONDS,
        jwks_refresh_interval=idp_settings.KEY_RELOAD_MIN_INTERVAL,
        max_token_bytes=idp_settings.MAX_TOKEN_BYTES,
        max_header_bytes=idp_settings.MAX_HEADER_BYTES,
        max_json_depth=idp_settings.MAX_JSON_DEPTH,
        max_delegation_depth=idp_settings.MAX_DELEGATION_DEPTH,
        revocation_redis_url=idp_settings.REVOCATION_REDIS_URL,
        revocation_prefix=idp_settings.REVOCATION_REDIS_PREFIX,
        revocation_max_age=idp_settings.RESOURCE_REVOCATION_MAX_AGE,
        introspection=idp_settings.RESOURCE_INTROSPECTION,
        client_id=idp_settings.RESOURCE_CLIENT_ID,
        client_secret=idp_settings.RESOURCE_CLIENT_SECRET,
    )


def get_validator() -> TokenValidator:
    """The process-wide validator built from settings (its JWKS cache is shared)."""
    global _validator
    if _validator is None:
        with _lock:
            if _validator is None:
                _validator = TokenValidator(config_from_settings())
    return _validator


def set_validator(validator: TokenValidator | None) -> None:
    """Use ``validator`` from now on (None: rebuild from settings on next use)."""
    global _validator
    with _lock:
        _validator = validator


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        set_validator(None)


setting_changed.connect(_settings_changed)


# -- challenges -------------------------------------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def resource_metadata_url(request: Any) -> str | None:
    """Where the RFC 9728 metadata of the resource ``request`` falls under is (section 5.1;
    the URL formed as in section 3.1), or ``RESOURCE_METADATA_URL``; None when the site
    cannot name the resource (no ``RESOURCE_URL`` and a host it may not derive one from)."""
    if idp_settings.RESOURCE_METADATA_URL:
        return str(idp_settings.RESOURCE_METADATA_URL)
    resource = metadata.resource_for_request(request)
    return metadata.metadata_url(resource) if resource else None


def bearer_challenge(
    request: Any,
    error: str | None = None,
    description: str | None = None,
    scope: Iterable[str] | None = None,
    realm: str = "api",
) -> str:
    """``Bearer realm=..., error=..., error_description=..., scope=..., resource_metadata=...``
    (RFC 6750 section 3; RFC 9728 section 5.1). No error code when no token was sent;
    no ``resource_metadata`` when the site cannot name the resource."""
    parts = [f"realm={_quote(realm)}"]
    if error:
        parts.append(f"error={_quote(error)}")
    if description:
        parts.append(f"error_description={_quote(description)}")
    if scope:
        parts.append(f"scope={_quote(' '.join(scope))}")
    url = resource_metadata_url(request)
    if url:
        parts.append(f"resource_metadata={_quote(url)}")
    return "Bearer " + ", ".join(parts)


# -- authentication ----------------------------------------------------------------


class DelegatedUser:
    """The user a delegated token speaks for: not a database row, just its ``sub``."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token: DelegatedToken) -> None:
        self.token = token
        self.username = token.subject

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"DelegatedUser({self.username!r}, actors={list(self.token.actors)!r})"


class InvalidToken(exceptions.AuthenticationFailed):
    default_code = "invalid_token"


class ProviderDown(exceptions.APIException):
    status_code = 503
    default_detail = "Token validation is temporarily unavailable."
    default_code = "temporarily_unavailable"


class InsufficientScope(exceptions.PermissionDenied):
    default_detail = "The access token lacks a required scope."
    default_code = "insufficient_scope"


class DelegationNotAllowed(exceptions.PermissionDenied):
    default_detail = "This delegation chain may not use this resource."
    default_code = "delegation_not_allowed"


_ERROR_ATTRIBUTE = "_delegation_idp_token_error"


class DelegatedTokenAuthentication(BaseAuthentication):
    """Bearer tokens issued by the provider, validated locally (RFC 6750, RFC 9068)."""

    www_authenticate_realm = "api"

    def get_validator(self) -> TokenValidator:
        return get_validator()

    def authenticate(self, request: Request) -> tuple[DelegatedUser, DelegatedToken] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None  # another authentication class may know this scheme
        try:
            token = value.strip().decode("ascii")
        except UnicodeDecodeError:
            token = ""
        if not token or " " in token:
            self._refuse(request, TokenError("malformed", "The Authorization header is malformed."))
        try:
            urls = metadata.resource_urls_for(request)
            delegated = self.get_validator().validate(token, resource_urls=urls)
        except ProviderUnavailable as exc:
            raise ProviderDown(exc.description) from exc
        except TokenError as exc:
            self._refuse(request, exc)
        return DelegatedUser(delegated), delegated

    def _refuse(self, request: Request, exc: TokenError) -> None:
        setattr(request, _ERROR_ATTRIBUTE, exc)
        raise InvalidToken(exc.description) from exc

    def authenticate_header(self, request: Request) -> str:
        error: TokenError | None = getattr(request, _ERROR_ATTRIBUTE, None)
        if error is None:
            return bearer_challenge(request, realm=self.www_authenticate_realm)
        return bearer_challenge(request, error.error, error.description, realm=self.www_authenticate_realm)


# -- permissions -------------------------------------------------------------------


def _token(request: Request) -> DelegatedToken | None:
    return request.auth if isinstance(request.auth, DelegatedToken) else None


class _DelegationPermission(permissions.BasePermission):
    """Base: refuses requests without a delegated token; subclasses judge the token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = _token(request)
        if token is None:
            return False
        return self.allows(token, request, view)

    def allows(self, token: DelegatedToken, request: Request, view: Any) -> bool:
        raise NotImplementedError

    @staticmethod
    def deny(message: str) -> bool:
        raise DelegationNotAllowed(message)


class HasScopes(_DelegationPermission):
    """The token carries every scope in ``view.required_scopes`` (403 ``insufficient_scope``)."""

    required_scopes: tuple[str, ...] = ()

    def allows(self, token: DelegatedToken, request: Request, view: Any) -> bool:
        required = tuple(self.required_scopes) or tuple(getattr(view, "required_scopes", ()))
        if token.has_scopes(*required):
            return True
        exc = InsufficientScope()
        exc.auth_header = bearer_challenge(  # type: ignore[attr-defined]
            request, "insufficient_scope", "The access token lacks a required scope.", required
        )
        raise exc

    @classmethod
    def of(cls, *scopes: str) -> type[HasScopes]:
        """``HasScopes.of("tasks.read")``: the scopes named here instead of on the view."""
        return type(f"HasScopes_{'_'.join(scopes)}", (cls,), {"required_scopes": tuple(scopes)})


class MaxDelegationDepth(_DelegationPermission):
    """At most ``view.max_delegation_depth`` actors between the user and this request."""

    max_depth: int | None = None

    def allows(self, token: DelegatedToken, request: Request, view: Any) -> bool:
        limit = self.max_depth if self.max_depth is not None else getattr(view, "max_delegation_depth", None)
        if limit is None or token.depth <= int(limit):
            return True
        return self.deny(f"The delegation chain is deeper than {int(limit)}.")

    @classmethod
    def of(cls, depth: int) -> type[MaxDelegationDepth]:
        return type(f"MaxDelegationDepth_{depth}", (cls,), {"max_depth": depth})


class _ActorSetPermission(_DelegationPermission):
    """Compares the chain's actors with a set: from ``of(...)`` or the view's attribute."""

    actors: frozenset[str] | None = None
    view_attribute = ""

    def actor_set(self, view: Any) -> frozenset[str]:
        if self.actors is not None:
            return self.actors
        return frozenset(getattr(view, self.view_attribute, ()))

    @classmethod
    def of(cls, *actors: str) -> Any:
        """This permission with a fixed set, e.g. ``AllowedActors.of("https://agent1.example.com")``."""
        return type(f"{cls.__name__}_", (cls,), {"actors": frozenset(actors)})


class AllowedActors(_ActorSetPermission):
    """Every actor of the chain is in ``view.allowed_actors`` (a user's own token passes)."""

    view_attribute = "allowed_actors"

    def allows(self, token: DelegatedToken, request: Request, view: Any) -> bool:
        if set(token.actors) <= self.actor_set(view):
            return True
        return self.deny("An actor in the delegation chain is not allowed here.")


class ForbiddenActors(_ActorSetPermission):
    """No actor of the chain is in ``view.forbidden_actors``."""

    view_attribute = "forbidden_actors"

    def allows(self, token: DelegatedToken, request: Request, view: Any) -> bool:
        if not set(token.actors) & self.actor_set(view):
            return True
        return self.deny("An actor in the delegation chain is forbidden here.")


class DirectUserOnly(_DelegationPermission):
    """Only the user's own token: no ``act`` chain, and a user as subject (a token
    without a resource owner has a ``sub`` in the provider's reserved client namespace,
    ``urn:delegation-idp:client:<client_id>``, RFC 9068 section 2.2)."""

    def allows(self, token: DelegatedToken, request: Request, view: Any) -> bool:
        if token.is_delegated:
            return self.deny("This resource accepts the user's own token only, not a delegated one.")
        if is_client_subject(token.subject):
            return self.deny("This resource accepts a user's token only, not a client's own token.")
        return True
