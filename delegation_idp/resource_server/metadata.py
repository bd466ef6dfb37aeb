"""RFC 9728 OAuth 2.0 Protected Resource Metadata, as a view to mount.

https://www.rfc-editor.org/rfc/rfc9728 ::

    # urls.py of the resource server
    path("", include("delegation_idp.resource_server.urls")),

Each document names a resource by the URL clients use for it, never by the identity
URI the provider maps it to (``RESOURCE_SERVER_URI``, the ``aud`` of its tokens): a
client MUST NOT use a document whose ``resource`` is not the identifier the document's
URL was formed from, nor, reached from a ``WWW-Authenticate`` challenge, one that does
not name the URL it called (section 3.3).

* The site's *origin* is that of ``RESOURCE_URL`` when it is set; otherwise the request's
  scheme and host, provided Django accepted the host, ``ALLOWED_HOSTS`` lists it literally
  (not through ``*`` or a ``.example.com`` pattern) and it names the port the request
  arrived on (:func:`request_origin`).
* ``/.well-known/oauth-protected-resource`` names the root resource: ``RESOURCE_URL``
  when it has no path, else the origin.
* ``/.well-known/oauth-protected-resource/<path>`` (section 3.1) is served only for a
  path the site declares: that of ``RESOURCE_URL`` and those in ``RESOURCE_PATHS``
  (a trailing slash aside); it names ``origin + <path>``, the identifier the client formed
  the URL from. Any other suffix is answered 404.
* :func:`resource_for_request` is the resource a request falls under (the declared path
  it equals or lies below, else the root), whose document a 401's ``resource_metadata``
  names (section 5.1); :func:`resource_urls_for` lists every URL the site names, which
  the DRF authentication accepts as a token's ``aud`` besides the identity URI.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port
from django.utils.encoding import escape_uri_path
from django.views import View

from delegation_idp.conf import idp_settings
from delegation_idp.resource_server.validation import check_resource_url, same_resource

__all__ = [
    "WELL_KNOWN",
    "ProtectedResourceMetadataView",
    "declared_paths",
    "metadata_url",
    "protected_resource_metadata",
    "request_origin",
    "request_url",
    "resource_for_metadata_path",
    "resource_for_request",
    "resource_metadata_url",
    "resource_urls_for",
]

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


# -- what the site names -------------------------------------------------------------------


def configured_resource_url() -> str | None:
    """``RESOURCE_URL``, checked: an absolute http(s) URL without query or fragment."""
    url = idp_settings.RESOURCE_URL
    if not url:
        return None
    try:
        check_resource_url(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DELEGATION_IDP['RESOURCE_URL']: {exc}") from exc
    if urlsplit(url).query:
        raise ImproperlyConfigured("DELEGATION_IDP['RESOURCE_URL'] must not have a query.")
    return str(url)


def declared_paths() -> tuple[str, ...]:
    """The paths with a resource (and a path-suffixed document) of their own: the path of
    ``RESOURCE_URL`` and ``RESOURCE_PATHS``, as written; the root is not among them."""
    paths = []
    url = configured_resource_url()
    if url:
        paths.append(urlsplit(url).path)
    for path in idp_settings.RESOURCE_PATHS or ():
        if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path:
            raise ImproperlyConfigured(
                f"DELEGATION_IDP['RESOURCE_PATHS']: {path!r} is not a path starting with '/'."
            )
        paths.append(path)
    return tuple(dict.fromkeys(p for p in paths if p not in ("", "/")))


def _listed(domain: str) -> bool:
    """``ALLOWED_HOSTS`` names this host itself. A pattern lets a request in but is no
    statement that a host is this service's: ``*`` names none, ``.example.com`` only
    ``example.com``, not its subdomains (other services, perhaps)."""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # Django's own defaults
    return any(domain == entry.lower().removeprefix(".") for entry in allowed if entry != "*")


def request_origin(request: HttpRequest) -> str | None:
    """``scheme://host[:port]`` of the request, or None when it cannot name this service.

    The host comes from ``request.build_absolute_uri``, so Django has checked it against
    ``ALLOWED_HOSTS``; it must also be listed there literally. Django compares the host
    without its port, so the port is checked here: a ``Host`` header naming another port
    of the same machine (another service) must not make this one claim that service's URL,
    nor accept the tokens addressed to it.
    """
    try:
        absolute = request.build_absolute_uri("/")
    except DisallowedHost:
        return None
    parts = urlsplit(absolute)
    domain, port = split_domain_port(parts.netloc)
    if not domain or not _listed(domain):
        return None
    if (port or _DEFAULT_PORTS.get(parts.scheme)) != str(request.get_port()):
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


_ORIGIN_ATTRIBUTE = "_delegation_idp_request_origin"


def origin_for(request: HttpRequest | None) -> str | None:
    """The origin the site's resource URLs start with: ``RESOURCE_URL``'s, else the request's
    (worked out once per request: its audience and a DPoP proof's ``htu`` both need it)."""
    url = configured_resource_url()
    if url:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    if request is None:
        return None
    try:
        return getattr(request, _ORIGIN_ATTRIBUTE)  # type: ignore[no-any-return]
    except AttributeError:
        origin = request_origin(request)
        setattr(request, _ORIGIN_ATTRIBUTE, origin)
        return origin


def _root_resource(origin: str) -> str:
    url = configured_resource_url()
    if url and urlsplit(url).path in ("", "/"):
        return url  # as configured: section 3.3 compares it character for character
    return origin


def resource_for_metadata_path(request: HttpRequest, suffix: str | None) -> str | None:
    """The resource whose document is at ``WELL_KNOWN`` (``suffix`` None) or at
    ``WELL_KNOWN + "/" + suffix``; None when the site names none there."""
    origin = origin_for(request)
    if origin is None:
        return None
    if suffix is None:
        return _root_resource(origin)
    path = "/" + suffix
    if any(same_resource(path, declared) for declared in declared_paths()):
        return origin + escape_uri_path(path)  # the identifier the client formed the URL from
    return None


def resource_for_request(request: HttpRequest) -> str | None:
    """The resource a request to this site falls under: the declared path it equals (as the
    request spells it, so that the document names the URL the client called), else the
    longest declared path it lies below, else the root; None without an origin."""
    origin = origin_for(request)
    if origin is None:
        return None
    path = request.path
    below: str | None = None
    for declared in declared_paths():
        if same_resource(path, declared):
            return origin + escape_uri_path(path)
        if path.startswith(declared.rstrip("/") + "/") and (below is None or len(declared) > len(below)):
            below = declared
    return origin + escape_uri_path(below) if below else _root_resource(origin)


def resource_urls_for(request: HttpRequest | None) -> tuple[str, ...]:
    """The resource URLs a token's ``aud`` may name: one per declared path, or the root
    resource when none is declared, at ``RESOURCE_URL``'s origin, else at ``request``'s (none
    without a request)."""
    origin = origin_for(request)
    if origin is None:
        return ()
    declared = declared_paths()
    # The bare origin is accepted as an audience only by a site that declares no path: behind
    # a gateway that routes the paths of one origin to several services, a service that
    # declared its path but took tokens for the origin would take every token issued for it.
    urls = [*([] if declared else [_root_resource(origin)]), *(origin + escape_uri_path(p) for p in declared)]
    url = configured_resource_url()
    if url:
        urls.append(url)
    return tuple(dict.fromkeys(urls))


def metadata_url(resource: str) -> str:
    """Where the metadata of ``resource`` is (section 3.1): the well-known path goes
    between the host and the path, a path of just ``/`` dropped."""
    parts = urlsplit(resource)
    path = parts.path if parts.path != "/" else ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{path}{query}"


def resource_metadata_url(request: Any) -> str | None:
    """Where the RFC 9728 metadata of the resource ``request`` falls under is (section 5.1;
    the URL formed as in section 3.1), or ``RESOURCE_METADATA_URL``; None when the site
    cannot name the resource (no ``RESOURCE_URL`` and a host it may not derive one from)."""
    if idp_settings.RESOURCE_METADATA_URL:
        return str(idp_settings.RESOURCE_METADATA_URL)
    resource = resource_for_request(request)
    return metadata_url(resource) if resource else None


def request_url(request: Any) -> str:
    """The URL a request was sent to, as this site names it, for a DPoP proof's ``htu``: the
    origin of ``RESOURCE_URL``, else of the request (:func:`.origin_for`, which
    trusts only hosts ``ALLOWED_HOSTS`` lists literally), and the request's path (with the
    script prefix: behind a proxy that strips a path, set ``FORCE_SCRIPT_NAME``). Empty
    when the site cannot name itself: every proof is then refused (``dpop_wrong_url``)."""
    origin = origin_for(request)
    return origin + escape_uri_path(request.path) if origin else ""


# -- the document --------------------------------------------------------------------------


def protected_resource_metadata(resource: str, **overrides: Any) -> dict[str, Any]:
    """The metadata document (section 2) of ``resource`` from settings, with ``overrides``."""
    data: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": [idp_settings.ISSUER],
        "bearer_methods_supported": ["header"],
    }
    scopes = list(idp_settings.RESOURCE_SCOPES_SUPPORTED or [])
    if scopes:
        data["scopes_supported"] = scopes
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data


def _not_found(error: str, description: str) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=404)
    response["Cache-Control"] = "no-store"
    return response


class ProtectedResourceMetadataView(View):
    """``GET`` answers the metadata as JSON; class attributes override settings."""

    resource_name: str | None = None
    resource_documentation: str | None = None
    scopes_supported: list[str] | None = None
    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest, suffix: str | None = None, **kwargs: Any) -> HttpResponse:
        if not idp_settings.RESOURCE_SERVER_URI:
            return _not_found("not_configured", "This site is not configured as a protected resource.")
        # A query is part of the identifier the URL was formed from (section 3.1): the site
        # names no resource with one.
        resource = None if request.META.get("QUERY_STRING") else resource_for_metadata_path(request, suffix)
        if resource is None:
            return _not_found("not_found", "No protected resource is described at this address.")
        data = protected_resource_metadata(
            resource,
            resource_name=self.resource_name,
            resource_documentation=self.resource_documentation,
            scopes_supported=self.scopes_supported,
        )
        response = JsonResponse(data)
        response["Cache-Control"] = "public, max-age=3600"
        return response
