"""The validator of a Django resource server, built once per process from its settings.

:func:`get_validator` is what :class:`.drf.DelegatedTokenAuthentication` validates with (and
any other Django view may): a :class:`~.validation.TokenValidator` from
``settings.DELEGATION_IDP`` (:func:`config_from_settings`), whose seen DPoP proofs go to the
Django cache ``DPOP_REPLAY_CACHE_ALIAS``, shared by every process of the site (Redis in
production). It is rebuilt after the settings change; :func:`set_validator` installs another.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from rest_framework import exceptions

from delegation_idp import jose, rfc9449
from delegation_idp.conf import SETTING_NAME, idp_settings
from delegation_idp.resource_server import metadata
from delegation_idp.resource_server.validation import ResourceServerConfig, TokenValidator

__all__ = ["config_from_settings", "dpop_algorithms", "get_validator", "set_validator"]

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
        dpop_algorithms=dpop_algorithms(),
        dpop_max_age=int(idp_settings.DPOP_PROOF_MAX_AGE),
        dpop_nonce_lifetime=idp_settings.RESOURCE_DPOP_NONCE_LIFETIME or None,
        # the provider's derivation (DPOP_NONCE_SECRET, else SECRET_KEY): one secret per site
        dpop_nonce_secret=str(idp_settings.DPOP_NONCE_SECRET or settings.SECRET_KEY),
        revocation_modes=(
            tuple(idp_settings.RESOURCE_REVOCATION_MODES)
            if idp_settings.RESOURCE_REVOCATION_MODES is not None
            else None
        ),
        status_list_fail_open=bool(idp_settings.RESOURCE_STATUS_LIST_FAIL_OPEN),
        status_list_stale_seconds=float(idp_settings.RESOURCE_STATUS_LIST_STALE_SECONDS),
        status_list_max_bytes=int(idp_settings.RESOURCE_STATUS_LIST_MAX_BYTES),
        status_list_max_decompressed_bytes=int(idp_settings.RESOURCE_STATUS_LIST_MAX_DECOMPRESSED_BYTES),
        status_list_uri_prefixes=tuple(idp_settings.RESOURCE_STATUS_LIST_URI_PREFIXES or ()),
    )


def dpop_algorithms() -> tuple[str, ...]:
    """The DPoP proof algorithms accepted: ``DPOP_SIGNING_ALGORITHMS``, asymmetric ones only."""
    return tuple(a for a in idp_settings.DPOP_SIGNING_ALGORITHMS if a in jose.ASYMMETRIC_ALGORITHMS)


def get_validator() -> TokenValidator:
    """The process-wide validator built from settings (its JWKS cache is shared). Seen DPoP
    proofs go to the Django cache ``DPOP_REPLAY_CACHE_ALIAS``, shared by the site's processes."""
    global _validator
    if _validator is None:
        with _lock:
            if _validator is None:
                _validator = TokenValidator(
                    config_from_settings(),
                    replay_store=rfc9449.CacheReplayStore(idp_settings.DPOP_REPLAY_CACHE_ALIAS),
                )
    return _validator


def set_validator(validator: TokenValidator | None) -> None:
    """Use ``validator`` from now on (None: rebuild from settings on next use)."""
    global _validator
    with _lock:
        _validator = validator


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING_NAME, "SECRET_KEY"):
        set_validator(None)


setting_changed.connect(_settings_changed)
