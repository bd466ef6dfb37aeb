"""The keys of the trusted ID-JAG issuers an admin registered (``TrustedIssuer``), fetched
from their JWKS URIs and cached for every process.

* Fetched by ``ID_JAG_JWKS_FETCHER``: by default django-oauth-toolkit's SSRF-hardened CIMD
  fetcher (https only, public addresses only, the address it checked is the one it connects
  to, no redirects, ``CIMD_FETCH_TIMEOUT_SECONDS`` and ``CIMD_MAX_DOCUMENT_SIZE``). A test or
  development site that serves a JWKS on loopback names a fetcher that allows it, explicitly.
* Cached in Django's default cache for the lifetime the fetcher derived from the response's
  ``Cache-Control`` (bounded by django-oauth-toolkit's CIMD minimum and maximum ages).
* Cached per issuer and JWKS URI, so a changed ``jwks_uri`` is fetched at once; a fetch that
  failed is not tried again for ``ID_JAG_JWKS_REFRESH_INTERVAL`` (the assertions meanwhile
  get ``temporarily_unavailable``).
* Refreshed on a ``kid`` the cached set lacks (a rotation at the issuer), at most once per
  ``ID_JAG_JWKS_REFRESH_INTERVAL`` per issuer across all processes (a cache ``add``), so a
  stream of assertions with made-up ``kid`` values cannot make this server hammer the issuer.

Keys are picked by ``kid`` from the issuer's own set only; private members are dropped, and a
set of more than :data:`MAX_KEYS` keys is refused whole.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from django.core.cache import cache

from delegation_idp import jose
from delegation_idp.conf import idp_settings

__all__ = ["MAX_KEYS", "KeysUnavailable", "key_for"]

logger = logging.getLogger(__name__)

#: The most keys one issuer's JWKS may hold.
MAX_KEYS = 20
_PREFIX = "delegation_idp:idjag:jwks:"


class KeysUnavailable(Exception):
    """The issuer's JWKS could not be fetched or is not a key set: nothing can be verified."""


def _cache_key(kind: str, issuer: str, jwks_uri: str) -> str:
    """Per issuer *and* JWKS URI: an admin who points an issuer at another key set (its old
    host compromised, say) is never answered from the set of the old address."""
    digest = hashlib.sha256(f"{issuer}\n{jwks_uri}".encode()).hexdigest()
    return _PREFIX + kind + ":" + digest


def _fetch(jwks_uri: str) -> tuple[list[dict[str, Any]], int]:
    """The issuer's public JWKs and how long to keep them; raises :class:`KeysUnavailable`."""
    fetcher = idp_settings.ID_JAG_JWKS_FETCHER()
    try:
        document, max_age = fetcher.fetch(jwks_uri)
    except Exception as exc:  # the fetcher's own error class (CIMDError), or a site's fetcher's
        raise KeysUnavailable(type(exc).__name__) from exc
    members = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(members, list) or len(members) > MAX_KEYS:
        raise KeysUnavailable("not a key set")
    public = []
    for member in members:
        if (
            isinstance(member, Mapping)
            and member.get("use", "sig") == "sig"
            and isinstance(member.get("kid"), str)
        ):
            public.append(
                {k: v for k, v in member.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "k")}
            )
    return public, int(max_age)


def _keys(issuer: str, jwks_uri: str, *, refresh: bool) -> list[dict[str, Any]] | None:
    """The cached key set, fetched when absent or when ``refresh`` and the interval allows;
    None when a refresh was wanted but is not due yet."""
    cached = cache.get(_cache_key("set", issuer, jwks_uri))
    if cached is not None and not refresh:
        return list(cached)
    interval = int(idp_settings.ID_JAG_JWKS_REFRESH_INTERVAL)
    if cached is not None and not cache.add(_cache_key("refresh", issuer, jwks_uri), 1, timeout=interval):
        return None
    if cached is None and cache.get(_cache_key("failed", issuer, jwks_uri)) is not None:
        # A fetch failed within the interval: a stream of assertions naming an issuer whose
        # JWKS is down does not become a stream of fetches.
        raise KeysUnavailable("the last fetch failed")
    try:
        keys, max_age = _fetch(jwks_uri)
    except KeysUnavailable:
        logger.warning("the JWKS of trusted ID-JAG issuer %s could not be fetched", issuer)
        if cached is not None:
            return None  # keep the set we have; the unknown kid stays unknown
        cache.set(_cache_key("failed", issuer, jwks_uri), 1, timeout=interval)
        raise
    cache.set(_cache_key("set", issuer, jwks_uri), keys, timeout=max(1, max_age))
    cache.set(_cache_key("refresh", issuer, jwks_uri), 1, timeout=interval)
    cache.delete(_cache_key("failed", issuer, jwks_uri))
    return keys


def key_for(issuer: str, jwks_uri: str, kid: str, alg: str) -> jose.SigningKey | None:
    """The issuer's key ``kid`` for ``alg``, or None when its set has no such key (after one
    rate-limited refresh). A JWK that names another ``alg`` is not used for this one; one that
    names none is used for the header's (already allow-listed) algorithm. Raises
    :class:`KeysUnavailable` when there is no key set at all."""
    for refresh in (False, True):
        keys = _keys(issuer, jwks_uri, refresh=refresh)
        if keys is None:
            return None
        member = next((k for k in keys if k.get("kid") == kid), None)
        if member is not None:
            if member.get("alg") not in (None, alg):
                return None
            try:
                key = jose.public_key(member)
            except Exception:  # members that make no public key (jwcrypto's own errors)
                return None
            return jose.SigningKey(kid=kid, alg=alg, jwk=key.jwk)
    return None
