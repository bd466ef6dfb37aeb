"""The Token Status List endpoints (draft-ietf-oauth-status-list sections 8 and 9), mounted
by :mod:`delegation_idp.urls`:

* ``statuslists/<slug>``: one list's Status List Token, ``application/statuslist+jwt``
  (sections 8.1 and 8.2), with an ``ETag`` (``If-None-Match`` answers 304) and a
  ``Cache-Control`` lifetime of the list's ``ttl``, never past its ``exp``. The JWT form is
  the only one offered: an ``Accept`` that excludes it is answered 406. The ``time``
  parameter (historical resolution, section 8.4, which the privacy considerations advise
  against) is answered 501, as section 8.4 says;
* ``statuslists/``: the Status List Aggregation (section 9.3), the URIs of every live list,
  named in the server metadata as ``status_list_aggregation_endpoint`` (section 9.1).

Both are public and readable cross-origin (section 8.1 asks for CORS). Errors are the JSON
of RFC 6749 section 5.2 with ``Cache-Control: no-store``, each with an audit record.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required

from delegation_idp import audit
from delegation_idp.conf import idp_settings
from delegation_idp.core.errors import refusal
from delegation_idp.core.reasons import Reason
from delegation_idp.provider import status_lists, throttling
from delegation_idp.provider.resilience import error_response, storage_guard
from delegation_idp.statuslist import MEDIA_TYPE

__all__ = ["StatusListAggregationView", "StatusListView", "accepts_jwt"]

EVENT = "status_list"
# A list's slug: the base64url of 16 derived bytes (provider.status_lists); anything else is
# unknown before it reaches the database.
SLUG = re.compile(r"[A-Za-z0-9_-]{22}")


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not math.isfinite(quality):
                    quality = 0.0
        if media.strip():
            ranges.append((media.strip().lower(), quality))
    return ranges


def accepts_jwt(accept: str) -> bool:
    """Whether an ``Accept`` header admits ``application/statuslist+jwt`` (RFC 9110 section
    12.5.1): absent, or a range that matches it with a non-zero quality; the most specific
    matching range decides."""
    if not accept.strip():
        return True
    best: tuple[int, float] | None = None
    for media, quality in _media_ranges(accept):
        specificity = {MEDIA_TYPE: 3, "application/*": 2, "*/*": 1}.get(media)
        if specificity is not None and (best is None or specificity > best[0]):
            best = (specificity, quality)
    return best is not None and best[1] > 0


def _refuse(request: HttpRequest, reason: Reason) -> HttpResponse:
    audit.write_refusal(
        event=EVENT,
        error=reason.error,
        reason=reason,
        client_id="",
        client_ip=throttling.client_address(request.META),
    )
    response = error_response(refusal(reason))
    response["Access-Control-Allow-Origin"] = "*"
    return response


class _Public(View):
    http_method_names = ["get", "head", "options"]

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = _refuse(request, Reason.METHOD_NOT_ALLOWED)
        response["Allow"] = "GET, HEAD, OPTIONS"
        return response

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = HttpResponse(status=204)
        response["Allow"] = "GET, HEAD, OPTIONS"
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Methods"] = "GET, HEAD"
        response["Access-Control-Allow-Headers"] = "Accept, If-None-Match"
        return response


@method_decorator(storage_guard(EVENT), name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class StatusListView(_Public):
    """One Status List Token (sections 8.1 and 8.2)."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        if "time" in request.GET:
            return _refuse(request, Reason.STATUS_LIST_HISTORY_UNSUPPORTED)
        if not accepts_jwt(request.META.get("HTTP_ACCEPT", "")):
            return _refuse(request, Reason.STATUS_LIST_NOT_ACCEPTABLE)
        now = timezone.now()
        row = status_lists.served(slug, now) if SLUG.fullmatch(slug) else None  # no odd bytes reach SQL
        if row is None or not row.token:
            return _refuse(request, Reason.STATUS_LIST_NOT_FOUND)
        remaining = int((row.token_expires_at - now).total_seconds()) if row.token_expires_at else 0
        max_age = max(0, min(int(idp_settings.STATUS_LIST_TTL), remaining))
        etags = [t.strip() for t in request.META.get("HTTP_IF_NONE_MATCH", "").split(",")]
        if row.etag and (row.etag in etags or "*" in etags):
            response: HttpResponse = HttpResponseNotModified()
        else:
            response = HttpResponse(row.token, content_type=MEDIA_TYPE)
        response["ETag"] = row.etag
        response["Cache-Control"] = f"public, max-age={max_age}"
        response["Vary"] = "Accept"
        response["Access-Control-Allow-Origin"] = "*"
        return response


@method_decorator(storage_guard(EVENT), name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class StatusListAggregationView(_Public):
    """The Status List Aggregation (section 9.3): ``{"status_lists": [uri, ...]}``."""

    def get(self, request: HttpRequest) -> HttpResponse:
        response = JsonResponse({"status_lists": status_lists.live_lists()})
        response["Cache-Control"] = f"public, max-age={int(idp_settings.STATUS_LIST_TTL)}"
        response["Access-Control-Allow-Origin"] = "*"
        return response
