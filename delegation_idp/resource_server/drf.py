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
``jti``, client id, the actor chain nearest first, its depth, and ``jkt``, the thumbprint
of the key a DPoP-bound token is bound to) and ``request.user`` a :class:`DelegatedUser`.

Both schemes are accepted (RFC 9449 section 7): ``Authorization: Bearer <token>`` for a
bearer token, and ``Authorization: DPoP <token>`` with a ``DPoP`` proof header for a
DPoP-bound one (a bound token presented as a bearer token is refused). The proof's
``htu`` is compared with the URL this site names the request by: the origin of
``RESOURCE_URL``, else the request's own (a host ``ALLOWED_HOSTS`` lists literally, on the
port it arrived on: :func:`.metadata.origin_for`), and the request's path. Seen proofs are
remembered in the cache ``DPOP_REPLAY_CACHE_ALIAS``; with ``RESOURCE_DPOP_NONCE_LIFETIME``
set, proofs need a nonce (RFC 9449 section 9), sent in ``DPoP-Nonce`` on every answer to a
DPoP request.

Refusals carry an RFC 6750 ``WWW-Authenticate: Bearer`` challenge with ``error`` and, per
RFC 9728 section 5.1, ``resource_metadata`` (the document naming the resource the request
falls under), followed by a ``DPoP algs="..."`` challenge (RFC 9449 section 7.2); a
refused DPoP request gets the ``DPoP`` challenge alone, with its ``error``
(``invalid_token``, ``invalid_dpop_proof`` or ``use_dpop_nonce``). Every refusal is sent
with ``Cache-Control: no-store``.

Only :mod:`delegation_idp.conf`, :mod:`delegation_idp.jose`, :mod:`delegation_idp.rfc9449`
and :mod:`delegation_idp.core` are imported from the provider: no models.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from delegation_idp import is_client_subject
from delegation_idp.resource_server import metadata
from delegation_idp.resource_server.dpop import BEARER, DPOP, dpop_challenge, quote, read_authorization
from delegation_idp.resource_server.site import (
    config_from_settings,
    dpop_algorithms,
    get_validator,
    set_validator,
)
from delegation_idp.resource_server.validation import (
    DelegatedToken,
    DpopProofError,
    ProofRequest,
    ProviderUnavailable,
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
    "challenge_for",
    "config_from_settings",
    "get_validator",
    "proof_request",
    "set_validator",
]

# -- challenges -------------------------------------------------------------------


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
    parts = [f"realm={quote(realm)}"]
    if error:
        parts.append(f"error={quote(error)}")
    if description:
        parts.append(f"error_description={quote(description)}")
    if scope:
        parts.append(f"scope={quote(' '.join(scope))}")
    url = metadata.resource_metadata_url(request)
    if url:
        parts.append(f"resource_metadata={quote(url)}")
    return "Bearer " + ", ".join(parts)


def challenge_for(
    request: Any,
    scheme: str | None,
    error: str | None = None,
    description: str | None = None,
    scope: Iterable[str] | None = None,
    realm: str = "api",
    algorithms: Iterable[str] | None = None,
) -> str:
    """The ``WWW-Authenticate`` value of a refusal: for a request that presented a token with
    the DPoP scheme, the ``DPoP`` challenge with the error (RFC 9449 section 7.1); otherwise
    the ``Bearer`` challenge with the error, then ``DPoP algs=...`` without one, since this
    service accepts both (section 7.2)."""
    algs = tuple(algorithms) if algorithms is not None else dpop_algorithms()
    if scheme == DPOP:
        return dpop_challenge(
            algs, error, description, scope=scope, resource_metadata=metadata.resource_metadata_url(request)
        )
    bearer = bearer_challenge(request, error, description, scope, realm=realm)
    return f"{bearer}, {dpop_challenge(algs)}"


def proof_request(request: Any) -> ProofRequest:
    """The DPoP proof of a request, its method and its URL (:func:`.metadata.request_url`). A repeated
    ``DPoP`` header reaches Django joined with commas, which the proof check refuses."""
    value = request.META.get("HTTP_DPOP")
    return ProofRequest(
        proofs=() if value is None else (value,),
        method=request.method or "GET",
        url=metadata.request_url(request),
    )


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
_SCHEME_ATTRIBUTE = "_delegation_idp_token_scheme"


def _response_headers(request: Request) -> dict[str, str] | None:
    """The headers the DRF view handling ``request`` adds to its response, whatever it
    answers (``APIView.headers``, copied into the response by ``finalize_response``), or
    None outside a view."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    headers = getattr(view, "headers", None)
    return headers if isinstance(headers, dict) else None


class DelegatedTokenAuthentication(BaseAuthentication):
    """Tokens issued by the provider, validated locally (RFC 6750, RFC 9068): bearer tokens,
    and DPoP-bound ones with a proof of their key (RFC 9449)."""

    www_authenticate_realm = "api"

    def get_validator(self) -> TokenValidator:
        return get_validator()

    def authenticate(self, request: Request) -> tuple[DelegatedUser, DelegatedToken] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            credentials = read_authorization(header)
        except TokenError as exc:
            scheme = header.split(b" ", 1)[0].lower()
            setattr(request, _SCHEME_ATTRIBUTE, DPOP if scheme == DPOP.encode() else BEARER)
            self._refuse(request, exc)
        if credentials is None:
            return None  # another authentication class may know this scheme
        setattr(request, _SCHEME_ATTRIBUTE, credentials.scheme)
        validator = self.get_validator()
        try:
            urls = metadata.resource_urls_for(request)
            proof = proof_request(request) if credentials.scheme == DPOP else None
            delegated = validator.validate(credentials.token, resource_urls=urls, dpop=proof)
        except ProviderUnavailable as exc:
            raise ProviderDown(exc.description) from exc
        except TokenError as exc:
            self._refuse(request, exc)
        if credentials.scheme == DPOP:
            self._send_nonce(request, validator)
        return DelegatedUser(delegated), delegated

    def _send_nonce(self, request: Request, validator: TokenValidator) -> None:
        """A fresh ``DPoP-Nonce`` on the answer to a DPoP request, where nonces are required
        (RFC 9449 section 9): the client proves with it next time, before the one it used
        goes stale."""
        nonce = validator.current_nonce()
        headers = _response_headers(request)
        if nonce is not None and headers is not None:
            headers["DPoP-Nonce"] = nonce

    def _refuse(self, request: Request, exc: TokenError) -> NoReturn:
        setattr(request, _ERROR_ATTRIBUTE, exc)
        headers = _response_headers(request)
        if headers is not None:
            headers["Cache-Control"] = "no-store"
        if getattr(request, _SCHEME_ATTRIBUTE, None) == DPOP:
            self._send_nonce(request, self.get_validator())
        raise InvalidToken(exc.description) from exc

    def authenticate_header(self, request: Request) -> str:
        error: TokenError | None = getattr(request, _ERROR_ATTRIBUTE, None)
        scheme = getattr(request, _SCHEME_ATTRIBUTE, None)
        if isinstance(error, DpopProofError):
            scheme = DPOP
        realm = self.www_authenticate_realm
        try:
            algorithms = self.get_validator().config.dpop_algorithms
        except exceptions.APIException:  # no resource configured: the settings' list
            algorithms = dpop_algorithms()
        if error is None:
            return challenge_for(request, scheme, realm=realm, algorithms=algorithms)
        return challenge_for(
            request, scheme, error.error, error.description, realm=realm, algorithms=algorithms
        )


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
        exc.auth_header = challenge_for(  # type: ignore[attr-defined]
            request,
            DPOP if token.is_bound else BEARER,
            "insufficient_scope",
            "The access token lacks a required scope.",
            required,
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
