"""Validating the provider's access tokens where they arrive (RFC 9068 section 4).

No Django here: a resource server, an MCP server or an agent builds a
:class:`TokenValidator` from a :class:`ResourceServerConfig` and calls
:meth:`TokenValidator.validate`, which returns a :class:`DelegatedToken` or
raises :class:`TokenError`. The rules:

* sizes first (RFC 8725 section 3.12), then the header through
  :mod:`delegation_idp.jose`, the project's only JOSE module: compact JWS,
  ``typ`` ``at+jwt``, ``alg`` on the allow-list and equal to the algorithm of the
  published key that ``kid`` names;
* keys come only from the provider's JWKS, found through its RFC 8414 metadata
  (``jwks_uri``), cached for ``jwks_cache_seconds``; a ``kid`` the cache does
  not know refreshes it, at most once per ``jwks_refresh_interval``, so tokens
  with invented ``kid`` values cannot turn into a flood of fetches;
* ``iss`` exactly the configured issuer, ``aud`` containing this service's identity
  URI or one of the URLs clients use for it (``resource_urls``, the RFC 9728 ``resource``
  its metadata names, compared with :func:`same_resource`), ``exp``/``nbf``/``iat`` with
  a leeway capped at :data:`MAX_LEEWAY`;
* the ``act`` chain is read with :func:`delegation_idp.core.actchain.chain_from_act`
  (bounded depth);
* how the token was presented (RFC 9449 section 7): a token bound to a key (``cnf.jkt``,
  section 6.1) only with the ``DPoP`` scheme and a proof of that key, checked by
  :func:`delegation_idp.rfc9449.check_proof` (``htm``, ``htu``, ``iat``, ``ath``, the nonce
  when this service requires one, ``jti`` unseen in the replay store); a bearer token never
  as bound;
* revocation: the provider publishes revoked ``jti`` values to Redis under
  ``revocation_prefix + jti`` (with a TTL until the token's expiry), signs Token Status
  Lists (draft-ietf-oauth-status-list, read by :mod:`.status_lists`), and
  answers RFC 7662 introspection. Without ``revocation_modes``, Redis is asked when it is
  configured, and ``introspection`` is ``"never"``, ``"fallback"`` (when Redis is not
  configured or not reachable) or ``"always"``. ``revocation_modes`` names the checks
  instead: ``"status_list"``, ``"redis"``, ``"introspection"``, any combination
  (introspection beside Redis only when Redis cannot answer).

Why one module over 400 lines: validation is one ordered pipeline (size, header, key by
``kid``, signature, claims, ``act``, the presentation and its proof, revocation) whose
steps share the key cache, the replay store and the revocation breaker; split, a reader
would lose the order the checks must run in.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

from delegation_idp import breaker, jose, rfc9449
from delegation_idp.core.actchain import ActChainError, chain_from_act
from delegation_idp.core.reasons import Reason
from delegation_idp.resource_server.status_lists import StatusListCache, StatusListCheckError
from delegation_idp.statuslist import VALID, StatusListError, reference_of

__all__ = [
    "MAX_LEEWAY",
    "DelegatedToken",
    "DpopProofError",
    "JwksCache",
    "ProofRequest",
    "ProviderUnavailable",
    "ResourceServerConfig",
    "TokenError",
    "TokenValidator",
    "check_resource_url",
    "same_resource",
]

logger = logging.getLogger(__name__)

#: Largest clock-skew allowance accepted, whatever the configuration says (seconds).
MAX_LEEWAY = 120
#: Largest metadata, JWKS or introspection response read from the provider (bytes).
MAX_DOCUMENT_BYTES = 64 * 1024
INTROSPECTION_MODES = ("never", "fallback", "always")
REVOCATION_MODES = ("status_list", "redis", "introspection")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")  # RFC 9068 section 2.2
#: An RFC 7638 SHA-256 thumbprint, base64url without padding (RFC 9449 section 6.1).
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")
#: The label of a resource server's nonces (:class:`delegation_idp.rfc9449.NonceIssuer`).
NONCE_LABEL = "resource"


def same_resource(first: str, second: str) -> bool:
    """Whether two resource URLs name the same resource: equal once one trailing slash is
    set aside (``https://api.example.com/tasks`` and ``.../tasks/``; ``https://api.example.com``
    and ``https://api.example.com/``). Nothing else is normalised: RFC 9728 section 3.3 and
    RFC 8707 compare resource identifiers as strings."""
    return first.removesuffix("/") == second.removesuffix("/")


def check_resource_url(url: Any) -> None:
    """A resource URL: absolute ``https`` or ``http`` (the service decides where it is served;
    RFC 9728 section 2 wants https in production), no fragment (RFC 8707 section 2)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc or "#" in url:
        raise ValueError(f"a resource URL must be an absolute http(s) URL without a fragment: {url!r}")


class TokenError(Exception):
    """A bearer token this service refuses (RFC 6750 section 3.1 ``invalid_token``).

    ``reason`` is a stable code for logs and tests; ``description`` is safe to
    show to the caller. Neither ever contains the token.
    """

    status = 401
    error = "invalid_token"

    def __init__(self, reason: str, description: str = "The access token is invalid."):
        super().__init__(description)
        self.reason = reason
        self.description = description


class DpopProofError(TokenError):
    """A DPoP proof this service refuses (RFC 9449 section 7.1): ``error`` is
    ``invalid_dpop_proof``, or ``use_dpop_nonce`` when only the nonce is missing or stale
    (section 9: resend the proof with the one in ``DPoP-Nonce``). ``reason`` is the
    catalogue's code of the failed check (:class:`delegation_idp.core.reasons.Reason`)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value, reason.description)
        self.error = reason.error


class ProviderUnavailable(TokenError):
    """The provider's keys, metadata or revocation answer could not be had; the
    token is refused (fail closed) with 503, not 401: the client did nothing wrong."""

    status = 503
    error = "temporarily_unavailable"


@dataclass(frozen=True)
class DelegatedToken:
    """A validated access token, as a resource server sees it.

    ``actors`` is the ``act`` chain, nearest (most recent) actor first: for the
    seed's last hop ``("https://mcp-server1.example.com",
    "https://agent2.example.com", "https://agent1.example.com")``.
    """

    subject: str
    scopes: frozenset[str]
    jti: str
    client_id: str
    actors: tuple[str, ...]
    issuer: str
    audiences: tuple[str, ...]
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False, compare=False)
    #: the ``aud`` entry this service accepted the token under: its identity URI, or the
    #: resource URL (as the token spells it) that clients use for it
    audience: str = ""
    #: the RFC 7638 thumbprint of the key the token is bound to (``cnf.jkt``, RFC 9449
    #: section 6.1), None for a bearer token; :meth:`TokenValidator.validate` accepts a
    #: bound token only with a proof signed by that key
    jkt: str | None = None

    @property
    def depth(self) -> int:
        """How many actors stand between the user and this request (0: the user's own token)."""
        return len(self.actors)

    @property
    def is_delegated(self) -> bool:
        return bool(self.actors)

    @property
    def actor(self) -> str | None:
        """The nearest actor: the party that called this service, or None for a direct user token."""
        return self.actors[0] if self.actors else None

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))

    @property
    def is_bound(self) -> bool:
        """Whether the token is DPoP-bound (accepted by :meth:`TokenValidator.validate` only
        with a proof of its key)."""
        return self.jkt is not None

    def has_scopes(self, *required: str) -> bool:
        return set(required) <= self.scopes


@dataclass(frozen=True)
class ResourceServerConfig:
    """What a receiving service needs to know.

    ``resource`` is its own identity URI (the audience the provider maps it to);
    ``resource_urls`` are the URLs clients use for it, the ``resource`` its RFC 9728
    metadata names and the RFC 8707 ``resource`` a client asks the provider for. A token
    is accepted when its ``aud`` contains ``resource`` exactly, or one of ``resource_urls``
    with a trailing slash set aside (:func:`same_resource`).
    """

    issuer: str
    resource: str
    algorithms: tuple[str, ...] = ("ES256", "RS256", "EdDSA")
    leeway: float = 30
    jwks_cache_seconds: float = 300
    jwks_refresh_interval: float = 5
    max_token_bytes: int = 8192
    max_header_bytes: int = 1024
    max_json_depth: int = 16
    max_delegation_depth: int = 5
    revocation_redis_url: str | None = None
    revocation_prefix: str = "delegation_idp:revoked:"
    #: when set, a revocation set whose ``@published`` heartbeat is older than this
    #: (seconds) or missing counts as unavailable (then: introspection or 503)
    revocation_max_age: float | None = None
    #: after a failed or timed-out look-up, the revocation set is left alone this long
    #: (seconds) and counts as unavailable, so a hung Redis costs one wait, not one a request
    revocation_breaker_seconds: float = 15.0
    introspection: str = "never"
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    http_timeout: float = 5.0
    #: the URLs clients use for this service (see above); a sequence, coerced to a tuple
    resource_urls: tuple[str, ...] = ()
    #: DPoP (RFC 9449): the proof algorithms accepted (asymmetric only), how old a proof's
    #: ``iat`` may be (seconds; ``leeway`` is allowed ahead), and whether this service
    #: requires nonces (section 9): None, or how long each lives (seconds), derived from
    #: ``dpop_nonce_secret`` so that every process sharing the secret accepts the others'
    dpop_algorithms: tuple[str, ...] = rfc9449.ALGORITHMS
    dpop_max_age: int = 60
    dpop_nonce_lifetime: int | None = None
    dpop_nonce_secret: str | None = field(default=None, repr=False)
    #: which revocation checks run (see the module docstring); None: Redis when configured,
    #: then ``introspection``
    revocation_modes: tuple[str, ...] | None = None
    #: Token Status Lists: a list that cannot be fetched or verified lets the token through
    #: (logged) instead of refusing it with 503; a cached list serves up to ``stale_seconds``
    #: past its ``ttl`` while it cannot be refreshed; the fetched token and the decompressed
    #: list are bounded; only URIs under ``status_list_uri_prefixes`` (default: the issuer's
    #: origin) are fetched
    status_list_fail_open: bool = False
    status_list_stale_seconds: float = 300
    status_list_max_bytes: int = 256 * 1024
    status_list_max_decompressed_bytes: int = 2 * 1024 * 1024
    status_list_uri_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.issuer or not self.resource:
            raise ValueError("a resource server needs the provider's issuer and its own URI")
        if isinstance(self.resource_urls, str):
            raise ValueError("resource_urls is a sequence of URLs, not one string")
        object.__setattr__(self, "resource_urls", tuple(self.resource_urls))
        for url in self.resource_urls:
            check_resource_url(url)
        if self.introspection not in INTROSPECTION_MODES:
            raise ValueError(f"introspection must be one of {INTROSPECTION_MODES}")
        if self.introspection != "never" and not (self.client_id and self.client_secret):
            raise ValueError("introspection needs the resource server's client_id and client_secret")
        if set(self.algorithms) - jose.ASYMMETRIC_ALGORITHMS:
            raise ValueError("only asymmetric algorithms may be allowed")
        object.__setattr__(self, "dpop_algorithms", tuple(self.dpop_algorithms))
        if not self.dpop_algorithms or set(self.dpop_algorithms) - jose.ASYMMETRIC_ALGORITHMS:
            raise ValueError("DPoP proofs need one or more asymmetric algorithms, and no other")
        if self.dpop_nonce_lifetime is not None and not self.dpop_nonce_secret:
            raise ValueError("DPoP nonces (dpop_nonce_lifetime) need a dpop_nonce_secret")
        if self.revocation_modes is not None:
            object.__setattr__(self, "revocation_modes", tuple(self.revocation_modes))
            modes = set(self.revocation_modes)
            if not modes or modes - set(REVOCATION_MODES):
                raise ValueError(f"revocation_modes: one or more of {REVOCATION_MODES}")
            if "redis" in modes and not self.revocation_redis_url:
                raise ValueError("the redis revocation mode needs revocation_redis_url")
            if "introspection" in modes and not (self.client_id and self.client_secret):
                raise ValueError("introspection needs the resource server's client_id and client_secret")
        if isinstance(self.status_list_uri_prefixes, str):
            # tuple("https://...") would be its characters: every URI starting with "h" would pass
            raise ValueError("status_list_uri_prefixes is a sequence of URL prefixes, not one string")
        object.__setattr__(self, "status_list_uri_prefixes", tuple(self.status_list_uri_prefixes))

    @property
    def effective_leeway(self) -> float:
        return min(max(float(self.leeway), 0.0), MAX_LEEWAY)


@dataclass(frozen=True)
class ProofRequest:
    """A request that presented its token with the ``DPoP`` scheme (RFC 9449 section 7.1):
    the values of its ``DPoP`` header (one is allowed: a list, so that a repeated header
    is seen and refused), its method, and the URL it was sent to as this service names it
    (its public origin and the request's path; a query is ignored)."""

    proofs: tuple[str, ...]
    method: str
    url: str


def _read_json(http: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    """A bounded JSON document from the provider: at most MAX_DOCUMENT_BYTES are read."""
    try:
        with http.stream(method, url, **kwargs) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ProviderUnavailable(
                        "provider_document_too_large", "The provider's answer is too large."
                    )
            status = response.status_code
    except httpx.HTTPError as exc:
        raise ProviderUnavailable("provider_unreachable", "The token provider cannot be reached.") from exc
    try:
        return status, jose.strict_json_loads(bytes(body), max_depth=8)
    except jose.JoseError as exc:
        raise ProviderUnavailable(
            "provider_document_malformed", "The provider's answer is not JSON."
        ) from exc


class JwksCache:
    """The provider's published keys, fetched through its RFC 8414 metadata.

    Thread-safe. Fresh for ``cache_seconds``; an unknown ``kid`` refreshes it at
    most once per ``refresh_interval``. Only asymmetric signing keys with an
    allowed ``alg`` are kept: the algorithm always comes from the key.
    """

    def __init__(
        self,
        issuer: str,
        http: httpx.Client,
        *,
        algorithms: tuple[str, ...],
        cache_seconds: float,
        refresh_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.http = http
        self.algorithms = frozenset(algorithms)
        self.cache_seconds = cache_seconds
        self.refresh_interval = refresh_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jose.SigningKey] = {}
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = float("-inf")
        self._last_attempt = float("-inf")
        #: how many times the JWKS was fetched (for tests and benchmarks)
        self.fetches = 0

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
            status, data = _read_json(self.http, "GET", url)
            if status != 200 or not isinstance(data, dict):
                raise ProviderUnavailable("metadata_unavailable", "The provider's metadata is unavailable.")
            # RFC 8414 section 3.3: the issuer in the document must be the one we trust.
            if data.get("issuer") != self.issuer or not isinstance(data.get("jwks_uri"), str):
                raise ProviderUnavailable(
                    "metadata_mismatch", "The provider's metadata names another issuer."
                )
            self._metadata = data
        return self._metadata

    def _refresh(self) -> None:
        self._last_attempt = self.clock()
        status, data = _read_json(self.http, "GET", self.metadata["jwks_uri"])
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ProviderUnavailable("jwks_unavailable", "The provider's keys are unavailable.")
        keys: dict[str, jose.SigningKey] = {}
        for member in data["keys"]:
            if not isinstance(member, dict) or member.get("use", "sig") != "sig":
                continue
            if member.get("alg") not in self.algorithms or member.get("kty") == "oct":
                continue
            if not isinstance(member.get("kid"), str) or _PRIVATE_MEMBERS & set(member):
                continue  # a JWKS that publishes private material is misconfigured: not trusted
            try:
                key = jose.public_key(member)
            except Exception:  # noqa: S112 - one malformed key must not hide the others
                continue
            keys[key.kid] = key
        self._keys = keys
        self._fetched_at = self.clock()
        self.fetches += 1

    def get(self, kid: str) -> jose.SigningKey | None:
        """The published key named ``kid``, or None. Never a key the token names by URL."""
        if self.clock() - self._fetched_at <= self.cache_seconds:
            key = self._keys.get(kid)
            if key is not None:
                return key
        with self._lock:
            now = self.clock()
            unavailable: ProviderUnavailable | None = None
            if now - self._fetched_at > self.cache_seconds:
                try:
                    self._refresh()
                except ProviderUnavailable as exc:
                    if not self._keys:
                        raise
                    # Keep verifying with the keys we have until the provider answers again.
                    self._fetched_at = now - self.cache_seconds + self.refresh_interval
                    unavailable = exc
            key = self._keys.get(kid)
            if key is None and unavailable is not None:
                raise unavailable  # the kid may well be the provider's newest: 503, not 401
            if key is None and now - self._last_attempt >= self.refresh_interval:
                self._refresh()
                key = self._keys.get(kid)
            return key


def _basic(client_id: str, secret: str) -> str:
    """HTTP Basic credentials, form-encoded first (RFC 6749 section 2.3.1)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class TokenValidator:
    """Validates bearer tokens for one service. Safe to share between threads."""

    def __init__(
        self,
        config: ResourceServerConfig,
        *,
        http: httpx.Client | None = None,
        redis_client: Any = None,
        replay_store: rfc9449.ReplayStore | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.http = http or httpx.Client(timeout=config.http_timeout)
        self.clock = clock
        self.jwks = JwksCache(
            config.issuer,
            self.http,
            algorithms=config.algorithms,
            cache_seconds=config.jwks_cache_seconds,
            refresh_interval=config.jwks_refresh_interval,
            clock=monotonic,
        )
        self._redis = redis_client
        self._redis_lock = threading.Lock()
        self._redis_breaker = breaker.Breaker(
            f"revocation set of {config.resource}",
            reset_seconds=config.revocation_breaker_seconds,
            clock=monotonic,
            fallback="it counts as unavailable meanwhile",
        )
        self._replay = replay_store
        self.nonces = (
            rfc9449.NonceIssuer(
                str(config.dpop_nonce_secret).encode(), lifetime=config.dpop_nonce_lifetime, label=NONCE_LABEL
            )
            if config.dpop_nonce_lifetime is not None
            else None
        )
        self._proof_policy: rfc9449.ProofPolicy | None = None
        self.status_lists = StatusListCache(
            issuer=config.issuer,
            http=self.http,
            resolve_key=self.jwks.get,
            algorithms=config.algorithms,
            max_bytes=config.status_list_max_bytes,
            max_decompressed_bytes=config.status_list_max_decompressed_bytes,
            max_header_bytes=config.max_header_bytes,
            max_json_depth=config.max_json_depth,
            leeway=config.effective_leeway,
            stale_seconds=config.status_list_stale_seconds,
            retry_interval=config.jwks_refresh_interval,
            uri_prefixes=config.status_list_uri_prefixes,
            clock=clock,
            monotonic=monotonic,
        )

    def __repr__(self) -> str:
        return f"TokenValidator(issuer={self.config.issuer!r}, resource={self.config.resource!r})"

    # -- the checks ---------------------------------------------------------------

    def verify(self, token: str, *, resource_urls: Iterable[str] = ()) -> DelegatedToken:
        """Signature, header and claims only: everything that needs no network
        once the provider's keys are cached. ``resource_urls`` adds, for this call, URLs
        that name this service besides the configured ones (a Django site whose URL is
        derived from the request passes the URLs its metadata names for it)."""
        if not isinstance(token, str) or not token:
            raise TokenError("missing", "No access token was presented.")
        if len(token) > self.config.max_token_bytes:
            raise TokenError("too_large", "The access token is too large.")
        try:
            _header, claims = jose.verify(
                token,
                self.jwks.get,
                algorithms=self.config.algorithms,
                max_bytes=self.config.max_token_bytes,
                max_header_bytes=self.config.max_header_bytes,
                max_json_depth=self.config.max_json_depth,
            )
            jose.validate_claims(
                claims,
                issuer=self.config.issuer,
                now=self.clock(),
                leeway=self.config.effective_leeway,
                required=REQUIRED_CLAIMS,
            )
        except jose.JoseError as exc:
            raise TokenError(
                exc.reason, _DESCRIPTIONS.get(exc.reason, "The access token is invalid.")
            ) from exc
        audience = self.addressed_as(jose.audiences(claims), resource_urls)
        if audience is None:
            raise TokenError("bad_aud", _DESCRIPTIONS["bad_aud"])
        try:
            actors = chain_from_act(claims.get("act"), max_depth=self.config.max_delegation_depth)
        except ActChainError as exc:
            raise TokenError("bad_act", "The delegation chain is malformed or too deep.") from exc
        scope = claims.get("scope", "")
        client_id = claims.get("client_id")
        if not isinstance(scope, str) or not isinstance(client_id, str):
            raise TokenError("malformed", "The access token is invalid.")
        return DelegatedToken(
            subject=claims["sub"],
            scopes=frozenset(scope.split()),
            jti=claims["jti"],
            client_id=client_id,
            actors=actors,
            issuer=claims["iss"],
            audiences=tuple(jose.audiences(claims)),
            expires_at=int(claims["exp"]),
            claims=MappingProxyType(dict(claims)),
            audience=audience,
            jkt=_bound_key(claims),
        )

    def addressed_as(self, audiences: Iterable[str], resource_urls: Iterable[str] = ()) -> str | None:
        """The entry of ``audiences`` that names this service, or None: the identity URI
        exactly, else a resource URL (configured, or given for this call) with a trailing
        slash set aside."""
        audiences = list(audiences)
        if self.config.resource in audiences:
            return self.config.resource
        urls = (*self.config.resource_urls, *resource_urls)
        for aud in audiences:
            if any(same_resource(aud, url) for url in urls):
                return aud
        return None

    def validate(
        self, token: str, *, resource_urls: Iterable[str] = (), dpop: ProofRequest | None = None
    ) -> DelegatedToken:
        """:meth:`verify`, the presentation, then the revocation check.

        ``dpop`` None: the token came as a bearer token (RFC 6750), and a DPoP-bound one is
        refused (RFC 9449 section 7.2). Otherwise it came with the ``DPoP`` scheme: it must be
        bound, and the request's proof must pass :meth:`check_proof`."""
        delegated = self.verify(token, resource_urls=resource_urls)
        if dpop is None:
            if delegated.jkt is not None:
                raise TokenError("dpop_bound_token", _DESCRIPTIONS["dpop_bound_token"])
        else:
            self.check_proof(token, delegated, dpop)
        self.check_revocation(token, delegated)
        return delegated

    async def avalidate(
        self, token: str, *, resource_urls: Iterable[str] = (), dpop: ProofRequest | None = None
    ) -> DelegatedToken:
        """:meth:`validate` for async code: the blocking work runs in a worker thread."""
        import anyio.to_thread

        call = functools.partial(self.validate, token, resource_urls=tuple(resource_urls), dpop=dpop)
        return await anyio.to_thread.run_sync(call)

    # -- DPoP (RFC 9449) ---------------------------------------------------------------

    @property
    def replay_store(self) -> rfc9449.ReplayStore:
        """Where seen proofs are remembered: the store given, else the revocation set's Redis
        (shared by every process that uses it), else this process's memory."""
        if self._replay is None:
            client = self._redis_client()
            self._replay = (
                rfc9449.RedisReplayStore(client) if client is not None else rfc9449.MemoryReplayStore()
            )
        return self._replay

    @property
    def proof_policy(self) -> rfc9449.ProofPolicy:
        if self._proof_policy is None:
            nonces, clock = self.nonces, self.clock
            self._proof_policy = rfc9449.ProofPolicy(
                algorithms=self.config.dpop_algorithms,
                replay=_FailClosed(self.replay_store),
                max_age=int(self.config.dpop_max_age),
                leeway=int(self.config.effective_leeway),
                max_header_bytes=self.config.max_header_bytes * 2,  # the header carries a key
                accepts_nonce=(lambda nonce: nonces.accepts(nonce, clock())) if nonces is not None else None,
            )
        return self._proof_policy

    def current_nonce(self) -> str | None:
        """The nonce to send in ``DPoP-Nonce`` now, or None when this service requires none."""
        return self.nonces.current(self.clock()) if self.nonces is not None else None

    def check_proof(self, token: str, delegated: DelegatedToken, dpop: ProofRequest) -> rfc9449.Proof:
        """The proof of a request that presented ``token`` with the ``DPoP`` scheme (RFC 9449
        section 7.1): the token must be bound, the proof pass every check of section 4.3 with
        ``ath`` the token's hash, and be signed by the key the token is bound to."""
        if delegated.jkt is None:
            raise TokenError("dpop_unbound_token", _DESCRIPTIONS["dpop_unbound_token"])
        try:
            proof = rfc9449.check_proof(
                dpop.proofs,
                method=dpop.method,
                url=dpop.url,
                now=self.clock(),
                policy=self.proof_policy,
                access_token=token,
            )
        except rfc9449.ProofError as exc:
            raise DpopProofError(Reason.for_proof_error(exc.reason)) from exc
        if proof.jkt != delegated.jkt:
            # RFC 9449 section 7.1: the key binding, not the proof, is what is wrong.
            raise TokenError("dpop_key_binding", _DESCRIPTIONS["dpop_key_binding"])
        return proof

    # -- revocation -----------------------------------------------------------------

    def _redis_client(self) -> Any:
        if self._redis is None and self.config.revocation_redis_url:
            with self._redis_lock:
                if self._redis is None:
                    import redis

                    self._redis = redis.Redis.from_url(
                        self.config.revocation_redis_url, socket_timeout=1, socket_connect_timeout=1
                    )
        return self._redis

    def is_revoked_in_redis(self, jti: str) -> bool | None:
        """True or False from the published revocation set; None when there is none to ask."""
        client = self._redis_client()
        if client is None:
            return None
        prefix = self.config.revocation_prefix

        def look_up() -> tuple[Any, Any]:
            if self.config.revocation_max_age is None:
                return client.exists(prefix + jti), None
            pipe = client.pipeline(transaction=False)
            pipe.exists(prefix + jti)
            pipe.get(prefix + "@published")
            exists, published = pipe.execute()
            return exists, published

        try:
            exists, published = self._redis_breaker.call(look_up)
        except Exception:  # any Redis failure, or the breaker open, means "could not check"
            return None
        if self.config.revocation_max_age is None:
            return bool(exists)
        if exists:
            return True
        try:
            age = self.clock() - float(published)
        except (TypeError, ValueError):
            return None
        return False if age <= self.config.revocation_max_age else None

    def check_status_list(self, delegated: DelegatedToken) -> None:
        """Draft-ietf-oauth-status-list section 8.3: the token's entry in the list it names must
        be VALID. A token without a ``status`` claim, or with a malformed one or an index past
        the list, is refused (401); a list that cannot be had or verified refuses it with 503,
        unless ``status_list_fail_open``."""
        try:
            reference = reference_of(delegated.claims)
        except StatusListError as exc:
            raise _refused(Reason.STATUS_LIST_REFERENCE_INVALID) from exc
        if reference is None:
            raise _refused(Reason.STATUS_LIST_REFERENCE_INVALID)
        try:
            value = self.status_lists.status(reference)
        except StatusListCheckError as exc:
            if exc.reason.error == "invalid_token":
                raise _refused(exc.reason) from exc
            if self.config.status_list_fail_open:
                logger.warning(
                    "status list unusable (%s); fail-open lets the token through", exc.reason.value
                )
                return
            raise ProviderUnavailable(exc.reason.value, exc.reason.description) from exc
        if value != VALID:
            raise _refused(Reason.STATUS_LIST_REVOKED)

    def check_revocation(self, token: str, delegated: DelegatedToken) -> None:
        modes = self.config.revocation_modes
        if modes is not None:
            self._check_modes(token, delegated, modes)
            return
        mode = self.config.introspection
        revoked = self.is_revoked_in_redis(delegated.jti)
        if revoked:
            raise TokenError("revoked", "The access token has been revoked.")
        if mode == "always" or (mode == "fallback" and revoked is None):
            if not self.introspect(token, delegated):
                raise TokenError("revoked", "The access token is not active.")
        elif revoked is None and self.config.revocation_redis_url:
            raise ProviderUnavailable("revocation_unavailable", "Revocation cannot be checked right now.")

    def _check_modes(self, token: str, delegated: DelegatedToken, modes: tuple[str, ...]) -> None:
        if "status_list" in modes:
            self.check_status_list(delegated)
        if "redis" in modes:
            revoked = self.is_revoked_in_redis(delegated.jti)
            if revoked:
                raise TokenError("revoked", "The access token has been revoked.")
            if revoked is None:
                if "introspection" not in modes:
                    raise ProviderUnavailable(
                        "revocation_unavailable", "Revocation cannot be checked right now."
                    )
                if not self.introspect(token, delegated):
                    raise TokenError("revoked", "The access token is not active.")
        elif "introspection" in modes and not self.introspect(token, delegated):
            raise TokenError("revoked", "The access token is not active.")

    def introspect(self, token: str, delegated: DelegatedToken) -> bool:
        """RFC 7662: is the token active, as the provider sees it right now?"""
        assert self.config.client_id and self.config.client_secret
        endpoint = self.jwks.metadata.get("introspection_endpoint")
        if not isinstance(endpoint, str):
            raise ProviderUnavailable("no_introspection", "The provider offers no introspection.")
        try:
            status, data = _read_json(
                self.http,
                "POST",
                endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": _basic(self.config.client_id, self.config.client_secret)},
            )
        except ProviderUnavailable as exc:
            raise ProviderUnavailable("introspection_failed", "Revocation cannot be checked.") from exc
        if status != 200 or not isinstance(data, dict):
            raise ProviderUnavailable("introspection_failed", "Revocation cannot be checked.")
        return data.get("active") is True and data.get("jti") == delegated.jti


class _FailClosed:
    """A replay store whose failure refuses the proof with 503 (``dpop_replay_unavailable``):
    a proof whose ``jti`` could not be recorded may be a replay. The project's stores raise
    :class:`~delegation_idp.rfc9449.ReplayStoreUnavailable`; one passed in may raise anything."""

    def __init__(self, store: rfc9449.ReplayStore) -> None:
        self.store = store

    def first_use(self, key: str, ttl: int) -> bool:
        try:
            return self.store.first_use(key, ttl)
        except Exception as exc:  # any failure of the store means "could not check"
            raise ProviderUnavailable(
                "dpop_replay_unavailable", "DPoP proofs cannot be checked right now."
            ) from exc


def _refused(reason: Reason) -> TokenError:
    return TokenError(reason.value, reason.description)


def _bound_key(claims: Mapping[str, Any]) -> str | None:
    """The ``cnf.jkt`` of a token's claims (RFC 9449 section 6.1), None without ``cnf``. A
    ``cnf`` this service cannot check (another confirmation method, or a malformed one)
    refuses the token: a sender-constrained token must never pass as a bearer token."""
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not _JKT.fullmatch(jkt):
        raise TokenError("bad_cnf", _DESCRIPTIONS["bad_cnf"])
    return jkt


_DESCRIPTIONS = {
    "expired": "The access token expired.",
    "not_yet_valid": "The access token is not valid yet.",
    "bad_aud": "The access token is not addressed to this service.",
    "bad_iss": "The access token was not issued by the trusted provider.",
    "unknown_kid": "The access token is signed with an unknown key.",
    "bad_signature": "The access token's signature does not verify.",
    "bad_typ": "The token is not an access token (typ at+jwt).",
    "bad_alg": "The access token's algorithm is not allowed.",
    "too_large": "The access token is too large.",
    "bad_cnf": "The access token is bound by a confirmation method this service does not support.",
    "dpop_bound_token": "The access token is DPoP-bound: present it with the DPoP scheme and a proof.",
    "dpop_unbound_token": "The access token is not DPoP-bound: present it as a Bearer token.",
    "dpop_key_binding": "Invalid DPoP key binding: the proof is not signed by the token's key.",
}
