"""Prometheus metrics of the provider, and the view that serves them (``prometheus-client``).

Off unless ``DELEGATION_IDP["METRICS"]`` is True; then this process counts:

* every request of the token, introspection and revocation endpoints, once, where its audit
  record is written (the ``request_audited`` signal): ``delegation_idp_requests_total`` by
  endpoint, grant, result and reason code (the catalogue's, :mod:`delegation_idp.core.reasons`),
  and its duration, ``delegation_idp_request_duration_seconds``, by endpoint, grant and result;
* the depth of every issued exchange (how many actors its ``act`` chain names),
  ``delegation_idp_exchange_chain_depth``;
* revoked tokens by cause (the ``token_revoked`` signal), ``delegation_idp_revoked_tokens_total``;
* the policy store's look-ups, answered from this process's snapshot or not,
  ``delegation_idp_policy_cache_lookups_total``.

and :class:`MetricsView` adds, read from the database at each scrape, the signing keys' state:
the current key's age, the time until the next key takes over, the keys per state.

No label holds a client id, a user, a token or anything a request chose freely: a grant type
the server does not know counts as ``other``, a reason outside the catalogue as ``other``. With
``METRICS_CLIENT_ID_LABELS`` a second counter, ``delegation_idp_requests_by_client_total``,
also has the client id, but only of a client that proved it (:func:`proven_client_id`), so no
request can add a series by inventing one.

Several processes (gunicorn workers) count into one directory when ``PROMETHEUS_MULTIPROC_DIR``
is set before they start, and each scrape sums them, as ``prometheus-client`` documents
(its "Multiprocess Mode"); the example site's ``gunicorn.conf.py`` does the rest. The
instruments are made on first use, so a process with metrics off creates neither series nor files.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from delegation_idp import TOKEN_EXCHANGE_GRANT, audit, signals
from delegation_idp.conf import idp_settings
from delegation_idp.core.reasons import Family, Reason
from delegation_idp.models import SigningKey
from delegation_idp.provider import throttling
from delegation_idp.provider.resilience import NO_STORE

logger = logging.getLogger(__name__)

__all__ = [
    "MetricsView",
    "SigningKeyCollector",
    "connect",
    "exposition",
    "observe_policy_lookup",
    "proven_client_id",
    "reset",
]

PREFIX = "delegation_idp_"

#: The ``endpoint`` label of each audit event.
ENDPOINTS = {
    "token": "token",
    "token_exchange": "token",
    "introspection": "introspection",
    "revocation_request": "revocation",
}
#: Grant types counted by name; any other value of ``grant_type`` (one the server does not
#: offer, such as the device flow's, or none) counts as ``other``.
GRANTS = frozenset(
    {"authorization_code", "client_credentials", "refresh_token", "password", TOKEN_EXCHANGE_GRANT}
)
#: Refusals that come only after the client authenticated: its tokens, the policy, the
#: re-checks of issuance. Before those (the request's shape, the credentials, a DPoP proof,
#: throttling) the client id is only what the request claims.
PROVEN_FAMILIES = frozenset({Family.TOKEN, Family.POLICY, Family.ISSUANCE})

# Seconds; an exchange takes a few milliseconds, a PBKDF2-hashed secret a quarter of a second.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Actors in the issued token's act chain; MAX_DELEGATION_DEPTH is at most 32 (check E016).
DEPTH_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 16, 32)


class _Children:
    """One metric's children by their label values. ``labels()`` checks its arguments and
    takes a lock at every call; here that happens once per label set (a bounded number)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.made: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.made.get(values)
        if child is None:
            child = self.made[values] = self.metric.labels(*values)
        return child


class _Instruments:
    """The process's counters and histograms, made once, on first use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            PREFIX + "requests",
            "Requests of the token, introspection and revocation endpoints, by outcome.",
            ["endpoint", "grant", "result", "reason"],
            registry=registry,
        )
        self.requests_by_client = Counter(
            PREFIX + "requests_by_client",
            "The same requests by client id (METRICS_CLIENT_ID_LABELS; clients that proved their id).",
            ["endpoint", "grant", "result", "reason", "client_id"],
            registry=registry,
        )
        self.duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from the start of a request's audit record to its end.",
            ["endpoint", "grant", "result"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.depth = Histogram(
            PREFIX + "exchange_chain_depth",
            "Actors in the act chain of each token a token exchange issued.",
            buckets=DEPTH_BUCKETS,
            registry=registry,
        )
        self.revoked = Counter(
            PREFIX + "revoked_tokens",
            "Tokens revoked (each one of a revoked subtree), by cause.",
            ["cause"],
            registry=registry,
        )
        self.policy_lookups = Counter(
            PREFIX + "policy_cache_lookups",
            "Look-ups of the stored policy: answered from this process's snapshot (hit), "
            "read into it (miss), or read without a snapshot (uncached).",
            ["result"],
            registry=registry,
        )
        self.count_request = _Children(self.requests)
        self.count_request_by_client = _Children(self.requests_by_client)
        self.time_request = _Children(self.duration)
        self.count_revoked = _Children(self.revoked)
        self.count_policy_lookup = _Children(self.policy_lookups)


_lock = threading.Lock()
_made: list[_Instruments] = []


def instruments() -> _Instruments:
    """The instruments, made (and registered with the default registry) on first call."""
    if not _made:
        with _lock:
            if not _made:
                _made.append(_Instruments(REGISTRY))
    return _made[0]


def reset() -> None:
    """Drop the instruments, and their counts, from the default registry; the next use makes
    new ones (tests). In multiprocess mode the files stay: they are the directory's."""
    with _lock:
        for made in _made:
            for collector in vars(made).values():
                if not isinstance(collector, _Children):
                    REGISTRY.unregister(collector)
        _made.clear()


# -- what is counted -----------------------------------------------------------------------------

_REASONS: dict[str, Reason] = {member.value: member for member in Reason}


def _grant(record: audit.Attempt, endpoint: str) -> str:
    if endpoint != "token":
        return ""
    return record.grant_type if record.grant_type in GRANTS else "other"


def proven_client_id(record: audit.Attempt) -> str:
    """The client id of ``record`` if the client proved it, else ``""``: a granted request
    (only an authenticated client gets a token, an introspection or a revocation), or one
    refused for a reason that arises only after authentication (:data:`PROVEN_FAMILIES`)."""
    if record.decision == "granted":
        return record.client_id
    reason = _REASONS.get(record.reason)
    return record.client_id if reason is not None and reason.family in PROVEN_FAMILIES else ""


def on_request_audited(sender: Any, record: audit.Attempt, seconds: float, **kwargs: Any) -> None:
    """``request_audited`` receiver: count the request, its duration, an exchange's depth."""
    if not idp_settings.METRICS:
        return
    counted = instruments()
    endpoint = ENDPOINTS.get(record.event, "other")
    grant = _grant(record, endpoint)
    result = "granted" if record.decision == "granted" else "denied"
    reason = record.reason if record.reason in _REASONS else "other"
    counted.count_request(endpoint, grant, result, reason).inc()
    counted.time_request(endpoint, grant, result).observe(seconds)
    if idp_settings.METRICS_CLIENT_ID_LABELS:
        client_id = proven_client_id(record)
        counted.count_request_by_client(endpoint, grant, result, reason, client_id).inc()
    if result == "granted" and record.grant_type == TOKEN_EXCHANGE_GRANT:
        counted.depth.observe(len(record.chain))


def on_token_revoked(sender: Any, jtis: list[str], reason: str, **kwargs: Any) -> None:
    """``token_revoked`` receiver. The cause is the code's own argument (``admin``,
    ``party_disabled``, ``key_revoked``...), never a request's value."""
    if idp_settings.METRICS and jtis:
        instruments().count_revoked(str(reason)[:64]).inc(len(jtis))


def observe_policy_lookup(hit: bool | None) -> None:
    """One look-up of the policy store: from the snapshot (True), into it (False), or
    without one (None: ``POLICY_CACHE`` off or the version triggers missing). Called inside
    the exchange: a failure to count (a ``PROMETHEUS_MULTIPROC_DIR`` that is not a directory)
    is logged, never raised."""
    if not idp_settings.METRICS:
        return
    try:
        instruments().count_policy_lookup("uncached" if hit is None else "hit" if hit else "miss").inc()
    except Exception:
        logger.exception("metrics: a policy look-up was not counted")


def connect() -> None:
    """Connect the receivers (idempotent), from the app's ``ready()``."""
    signals.request_audited.connect(on_request_audited, dispatch_uid="delegation_idp_metrics_requests")
    signals.token_revoked.connect(on_token_revoked, dispatch_uid="delegation_idp_metrics_revoked")


# -- read at each scrape ------------------------------------------------------------------------


class SigningKeyCollector:
    """The signing keys as the database holds them now (the same for every process).

    ``now`` is injectable for tests."""

    def __init__(self, now: Callable[[], datetime] = timezone.now) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        try:
            # Never the private key column.
            keys = list(SigningKey.objects.values_list("state", "created", "activates_at"))
        except DatabaseError as exc:
            logger.warning("metrics: signing keys not read (%s)", type(exc).__name__)
            return
        now = self.now()
        states = GaugeMetricFamily(PREFIX + "signing_keys", "Signing keys by state.", labels=["state"])
        for state, _label in SigningKey.STATE_CHOICES:
            states.add_metric([state], sum(1 for s, _, _ in keys if s == state))
        yield states
        started = [activates or created for s, created, activates in keys if s == SigningKey.CURRENT]
        if not started:
            return
        began = started[0]
        upcoming = sorted(a for s, _, a in keys if s == SigningKey.NEXT and a is not None)
        # rotate_keys publishes the next key one JWKS cache lifetime before the current one
        # has signed for KEY_ROTATION_PERIOD, and it takes over then.
        takeover = upcoming[0] if upcoming else began + timedelta(seconds=idp_settings.KEY_ROTATION_PERIOD)
        yield GaugeMetricFamily(
            PREFIX + "signing_key_age_seconds",
            "How long the current signing key has signed.",
            value=(now - began).total_seconds(),
        )
        yield GaugeMetricFamily(
            PREFIX + "signing_key_rotation_due_seconds",
            "Seconds until the next signing key takes over; negative when rotation is overdue.",
            value=(takeover - now).total_seconds(),
        )


class _Together:
    """Several collectors as one, for the exposition."""

    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def _sources() -> Any:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # prometheus-client's multiprocess mode: every process's files, summed per series.
        counted: Any = CollectorRegistry()
        MultiProcessCollector(counted, path=directory)
    else:
        counted = REGISTRY
    return _Together(counted, SigningKeyCollector())


def exposition(accept: str = "") -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape, in the format ``accept`` asks for (the
    Prometheus text format, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_sources()), content_type


# -- the view -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Any, ...]:
    """``METRICS_ALLOWED_ADDRESSES`` parsed once per value; an entry that is not an address
    or a network allows nothing (check E028 names it)."""
    parsed = []
    for entry in entries:
        try:
            parsed.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            continue
    return tuple(parsed)


def _address_allowed(request: HttpRequest, entries: Iterable[str]) -> bool:
    address = throttling.client_address(request.META)
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(entries)))


def _token_presented(request: HttpRequest, expected: str) -> bool:
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def allowed(request: HttpRequest) -> bool:
    """Whether ``request`` passes every protection configured, and at least one is."""
    entries = idp_settings.METRICS_ALLOWED_ADDRESSES or ()
    token = idp_settings.METRICS_TOKEN
    if not entries and not token:
        return False
    if entries and not _address_allowed(request, entries):
        return False
    return not token or _token_presented(request, str(token))


@method_decorator(login_not_required, name="dispatch")
class MetricsView(View):
    """``GET`` the metrics: 404 while ``METRICS`` is off, 403 to a request that fails a
    protection, never cached."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not idp_settings.METRICS:
            raise Http404
        if not allowed(request):
            response = HttpResponse("Forbidden\n", status=403, content_type="text/plain; charset=utf-8")
        else:
            body, content_type = exposition(request.META.get("HTTP_ACCEPT", ""))
            response = HttpResponse(body, content_type=content_type)
        for key, value in NO_STORE.items():
            response[key] = value
        return response
