"""Brute-force protection of user sign-in, counted in the throttle cache.

Every password check that goes through ``django.contrib.auth.authenticate()`` is
covered: the site's login page, the admin's, and django-oauth-toolkit's password
grant (its validator builds a Django request from the oauthlib one, with the
client's ``REMOTE_ADDR``). Wrong passwords count per (username, source address)
and per source address (:mod:`delegation_idp.provider.throttling`); never per username
alone, so nobody can lock a user out from everywhere.

Two settings turn it on for a site::

    # a site on Django's ModelBackend: replace it (one backend, so login() needs no backend=)
    AUTHENTICATION_BACKENDS = ["delegation_idp.provider.signin.SignInLockoutModelBackend"]
    # a site with other backends: put the refusing one first
    AUTHENTICATION_BACKENDS = ["delegation_idp.provider.signin.SignInLockoutBackend", *your_backends]
    MIDDLEWARE = [..., "delegation_idp.provider.signin.SignInLockoutMiddleware"]

The backend comes first and refuses every password check from a locked-out
(username, address) or address, before any password is hashed. The middleware
answers a refused sign-in with ``429`` and a page that says why and for how
long. Counting needs neither: the app counts ``user_login_failed``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from delegation_idp.provider import throttling

__all__ = [
    "SignInLockoutBackend",
    "SignInLockoutMiddleware",
    "SignInLockoutModelBackend",
    "locked_for",
]

BACKEND = "delegation_idp.provider.signin.SignInLockoutBackend"
MODEL_BACKEND = "delegation_idp.provider.signin.SignInLockoutModelBackend"
MIDDLEWARE = "delegation_idp.provider.signin.SignInLockoutMiddleware"
# Set on the request whose password check the backend refused: the seconds to wait.
LOCKED_ATTRIBUTE = "delegation_idp_sign_in_locked"


def client_address(request: Any) -> str | None:
    return throttling.client_address(getattr(request, "META", None))


def _username(credentials: dict[str, Any]) -> str | None:
    value = credentials.get(get_user_model().USERNAME_FIELD, credentials.get("username"))
    return value if isinstance(value, str) else None


def locked_for(username: str | None, address: str | None) -> int | None:
    """Seconds this username at this address must wait before a password is checked, or None."""
    return throttling.check_sign_in(username, address)


class SignInLockoutBackend(BaseBackend):
    """Refuses every password check from a locked-out (username, address) or address.

    It never authenticates anyone; it must come first in ``AUTHENTICATION_BACKENDS``
    (check ``delegation_idp.W004``), since ``authenticate()`` stops at the first backend
    that returns a user.
    """

    def authenticate(self, request: Any, username: str | None = None, **credentials: Any) -> Any:
        if request is None:
            return None
        if username is None:
            username = _username(credentials)
        wait = locked_for(username, client_address(request))
        if wait is None:
            return None
        setattr(request, LOCKED_ATTRIBUTE, wait)
        # authenticate() stops at PermissionDenied and sends user_login_failed.
        raise PermissionDenied("sign-in locked out")


class SignInLockoutModelBackend(SignInLockoutBackend, ModelBackend):
    """Django's ``ModelBackend`` behind the sign-in lockout: the drop-in replacement for a
    site whose only backend is ``ModelBackend`` (``login()`` and the test client's
    ``force_login()`` keep working without a ``backend`` argument)."""

    def authenticate(  # type: ignore[override]
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        SignInLockoutBackend.authenticate(self, request, username, **kwargs)
        return ModelBackend.authenticate(self, request, username, password, **kwargs)


class SignInLockoutMiddleware:
    """Turns a sign-in the backend refused into ``429`` with ``Retry-After`` and a page
    that says so (otherwise it reads as a wrong password)."""

    def __init__(self, get_response: Any):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        wait = getattr(request, LOCKED_ATTRIBUTE, None)
        if wait is None:
            return response
        return lockout_response(request, int(wait))


def lockout_response(request: HttpRequest, wait: int) -> HttpResponse:
    minutes = max(1, -(-wait // 60))
    body = render_to_string("delegation_idp/sign_in_locked.html", {"minutes": minutes}, request=request)
    response = HttpResponse(body, status=429)
    response["Retry-After"] = str(wait)
    response["Cache-Control"] = "no-store"
    return response


@receiver(user_login_failed, dispatch_uid="delegation_idp_sign_in_failed")
def sign_in_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """Every failed ``authenticate()`` with a request counts, unless the lockout refused it."""
    if request is None or getattr(request, LOCKED_ATTRIBUTE, None) is not None:
        return
    throttling.note_sign_in_failure(_username(credentials), client_address(request))


@receiver(user_logged_in, dispatch_uid="delegation_idp_signed_in")
def signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None:
        throttling.clear_sign_in_failures(user.get_username(), client_address(request))
