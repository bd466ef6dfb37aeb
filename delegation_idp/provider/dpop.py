"""DPoP (RFC 9449) at the provider's token endpoint: the proof of a token request, checked
once, before any grant runs, and the nonce the endpoint sends.

:func:`token_request_proof` reads the request's ``DPoP`` header and returns its checked
:class:`~delegation_idp.rfc9449.Proof`, None without a header, or raises the catalogue's
refusal (``invalid_dpop_proof``, or ``use_dpop_nonce`` with a fresh ``DPoP-Nonce``).
Where the proof goes next:

* token exchange: straight into the pipeline (:mod:`delegation_idp.rfc8693`);
* django-oauth-toolkit's grants: the proof's key thumbprint travels from the Django request
  to oauthlib's request in the headers django-oauth-toolkit's backend copies from
  ``request.META`` (:data:`BOUND_KEY`, a name no client header can take; see
  :class:`delegation_idp.provider.backends.DelegationOAuthLibCore`), where the token
  generator binds the token to it (:mod:`delegation_idp.provider.tokens`).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest

from delegation_idp import jose
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.models import AuthorizationCodeBinding, RefreshTokenBinding
from delegation_idp.rfc9449 import CacheReplayStore, NonceIssuer, Proof, ProofError, ProofPolicy, check_proof

__all__ = [
    "BOUND_KEY",
    "JKT_FORMAT",
    "Proof",
    "bind_authorization_code",
    "bind_refresh_token",
    "bound_key_of",
    "code_binding_refusal",
    "nonce_headers",
    "nonce_issuer",
    "proof_policy",
    "refresh_binding_refusal",
    "signing_algorithms",
    "token_request_proof",
]

#: An RFC 7638 SHA-256 thumbprint, as ``dpop_jkt`` carries it (RFC 9449 section 10).
JKT_FORMAT = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")

#: The oauthlib request header that carries a verified proof's key thumbprint. Not of the
#: ``HTTP_`` form: a WSGI server names every client header ``HTTP_*``, so no client sets it.
BOUND_KEY = "X_DELEGATION_IDP_DPOP_JKT"


def signing_algorithms() -> tuple[str, ...]:
    """The proof algorithms accepted (and advertised as ``dpop_signing_alg_values_supported``)."""
    return tuple(a for a in idp_settings.DPOP_SIGNING_ALGORITHMS if a in jose.ASYMMETRIC_ALGORITHMS)


def _nonce_secret() -> bytes:
    configured = idp_settings.DPOP_NONCE_SECRET
    return str(configured or settings.SECRET_KEY).encode("utf-8")


@functools.lru_cache(maxsize=4)
def nonce_issuer(label: str = "token") -> NonceIssuer | None:
    """The nonces of the token endpoint (``label`` ``token``) or of this site's resource side
    (``resource``), or None where none are required."""
    lifetime = (
        idp_settings.DPOP_NONCE_LIFETIME if label == "token" else idp_settings.RESOURCE_DPOP_NONCE_LIFETIME
    )
    if not lifetime:
        return None
    return NonceIssuer(_nonce_secret(), lifetime=int(lifetime), label=label)


@functools.lru_cache(maxsize=4)
def proof_policy(label: str = "token") -> ProofPolicy:
    issuer = nonce_issuer(label)
    return ProofPolicy(
        algorithms=signing_algorithms(),
        replay=CacheReplayStore(idp_settings.DPOP_REPLAY_CACHE_ALIAS),
        max_age=int(idp_settings.DPOP_PROOF_MAX_AGE),
        leeway=int(idp_settings.CLOCK_SKEW_SECONDS),
        max_header_bytes=int(idp_settings.MAX_HEADER_BYTES) * 2,
        accepts_nonce=(lambda nonce: issuer.accepts(nonce, time.time())) if issuer is not None else None,
    )


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DELEGATION_IDP", "SECRET_KEY"):
        nonce_issuer.cache_clear()
        proof_policy.cache_clear()


setting_changed.connect(_settings_changed)


def nonce_headers(label: str = "token") -> dict[str, str]:
    """``{"DPoP-Nonce": <the current nonce>}`` where nonces are required, else ``{}``."""
    issuer = nonce_issuer(label)
    return {"DPoP-Nonce": issuer.current(time.time())} if issuer is not None else {}


def token_request_proof(request: HttpRequest) -> Proof | None:
    """The checked proof of a token request, None without one (RFC 9449 section 5)."""
    value = request.META.get("HTTP_DPOP")
    if value is None:
        return None
    try:
        return check_proof(
            [value],
            method=request.method or "POST",
            url=request.build_absolute_uri(request.path),
            now=time.time(),
            policy=proof_policy("token"),
        )
    except ProofError as exc:
        raise refusal(Reason.for_proof_error(exc.reason), headers=nonce_headers("token")) from exc


def bound_key_of(oauthlib_request: Any) -> str | None:
    """The key thumbprint a django-oauth-toolkit grant's token is to be bound to, or None."""
    headers = getattr(oauthlib_request, "headers", None) or {}
    value = headers.get(BOUND_KEY)
    return value if isinstance(value, str) and value else None


def bind_refresh_token(refresh_token: Any, oauthlib_request: Any) -> None:
    """RFC 9449 section 5: a public client's refresh token is bound to the key that obtained it
    (a confidential client's is guarded by its client authentication)."""
    jkt = bound_key_of(oauthlib_request)
    client = oauthlib_request.client
    if jkt and client.client_type != client.CLIENT_CONFIDENTIAL:
        RefreshTokenBinding.objects.update_or_create(refresh_token=refresh_token, defaults={"jkt": jkt})


def refresh_binding_refusal(oauthlib_request: Any) -> Reason | None:
    """Why the refresh token being redeemed may not be, with this request's proof: bound to
    another key (``DPOP_KEY_MISMATCH``) or to a key no proof was sent for (``DPOP_REQUIRED``)."""
    instance = getattr(oauthlib_request, "refresh_token_instance", None)
    if instance is None:
        return None
    bound = RefreshTokenBinding.objects.filter(refresh_token=instance).values_list("jkt", flat=True).first()
    proved = bound_key_of(oauthlib_request)
    if not bound or bound == proved:
        return None
    return Reason.DPOP_KEY_MISMATCH if proved else Reason.DPOP_REQUIRED


def bind_authorization_code(grant: Any, oauthlib_request: Any) -> None:
    """RFC 9449 section 10: the authorization request's ``dpop_jkt`` (already checked at the
    authorization endpoint) binds the code it issued to that key."""
    try:
        jkt = oauthlib_request.dpop_jkt  # oauthlib exposes every query parameter by name
    except AttributeError:
        return
    if isinstance(jkt, str) and JKT_FORMAT.match(jkt):
        AuthorizationCodeBinding.objects.create(grant=grant, jkt=jkt)


def code_binding_refusal(code: str, client: Any, oauthlib_request: Any) -> Reason | None:
    """Why an authorization code bound with ``dpop_jkt`` may not be redeemed with this request's
    proof: by another key (``DPOP_KEY_MISMATCH``) or without one (``DPOP_REQUIRED``)."""
    bound = (
        AuthorizationCodeBinding.objects.filter(grant__code=code, grant__application=client)
        .values_list("jkt", flat=True)
        .first()
    )
    proved = bound_key_of(oauthlib_request)
    if not bound or bound == proved:
        return None
    return Reason.DPOP_KEY_MISMATCH if proved else Reason.DPOP_REQUIRED
