"""An agent's client for the provider: discovery, token exchange, revocation.

Sync (``AgentClient``) and async (``AsyncAgentClient``) over httpx; no Django needed::

    agent = AgentClient("https://idp.example.com", client_id, client_secret)
    result = agent.exchange(user_token, audience="https://agent2.example.com")
    result.access_token, result.expires_in, result.scope

    async with AsyncAgentClient("https://idp.example.com", client_id, client_secret) as agent:
        result = await agent.exchange(token, resource="https://mcp.example.com/mcp")

Exchanged tokens are cached per (subject ``jti``, target, scope) until shortly
before they expire, so parallel work reuses one token instead of minting many.
Errors are :class:`OAuthError` with the server's ``error`` code; the codes of
RFC 6749 section 5.2 and RFC 8693 section 2.2.2 have their own subclasses
(:class:`InvalidTarget`, :class:`InvalidScope`...), so ``except InvalidTarget``
works as well as ``err.error == "invalid_target"`` (:mod:`delegation_idp.client.errors`).

The user in the loop (OpenID CIBA Core 1.0, poll mode): for a hop whose rule needs the
user's approval, ``ask_approval`` sends the exchange's parameters with a ``binding_message``
and RFC 9396 ``authorization_details`` to the backchannel authentication endpoint, and
``wait_for_approval`` polls the token endpoint (every ``interval`` seconds, five more after
each ``slow_down``) until the user approves (the token), denies (:class:`AccessDenied`) or
the request expires (:class:`ExpiredToken`); the pure parts are :mod:`delegation_idp.client.ciba`::

    auth = agent.ask_approval(token, audience="https://payments.example.com",
                              binding_message="Pay Merchant A 123.50 EUR",
                              authorization_details=[{"type": "payment_initiation", ...}])
    result = agent.wait_for_approval(auth, timeout=300)

DPoP (RFC 9449): give the agent a key (``dpop=True`` generates one, or pass a
:class:`~delegation_idp.client.dpop.DPoPKey`) and every token request carries a proof signed
with it, so every token it obtains is bound to that key (``result.jkt``; ``token_type``
``DPoP``). Exchanging a bound token needs no more: the provider checks the proof of the
requester, whoever holds the subject. A ``use_dpop_nonce`` answer is retried once with the
server's nonce, and the latest nonce each server sent goes into the next proof to it.
``agent.auth(result)`` is the ``httpx.Auth`` that presents the token to a resource server
(``Authorization: DPoP`` with a proof, or ``Bearer`` for a token that is not bound)::

    agent = AgentClient("https://idp.example.com", client_id, client_secret, dpop=True)
    result = agent.exchange(user_token, audience="https://agent2.example.com")
    httpx.post(agent2_url, auth=agent.auth(result))

Revocation (RFC 7009) is retried while the provider answers ``503`` (section 2.2.1),
waiting its ``Retry-After`` up to ``REVOKE_MAX_WAIT`` seconds (or a growing backoff),
``REVOKE_ATTEMPTS`` times in all; then :class:`RevocationFailed` says the token was not
revoked, and the client's log names its ``jti`` (never the token).

Why one module over 400 lines: the synchronous and the asynchronous client are twins
(the same methods over ``httpx.Client`` and ``httpx.AsyncClient``) and share their form
builders and error mapping; kept side by side so they cannot drift.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from delegation_idp.client import ciba
from delegation_idp.client.ciba import BackchannelAuthentication
from delegation_idp.client.dpop import BearerAuth, DPoPAuth, DPoPKey, Nonces, asks_for_nonce
from delegation_idp.client.errors import (
    AccessDenied,
    ApprovalTimeout,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    RevocationFailed,
    SlowDown,
    UnauthorizedClient,
    UseDPoPNonce,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AccessDenied",
    "AgentClient",
    "ApprovalTimeout",
    "AsyncAgentClient",
    "AuthorizationPending",
    "BackchannelAuthentication",
    "DPoPKey",
    "ExchangeResult",
    "ExpiredToken",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "OAuthError",
    "RevocationFailed",
    "SlowDown",
    "UnauthorizedClient",
    "UseDPoPNonce",
]

logger = logging.getLogger(__name__)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# draft-ietf-oauth-identity-assertion-authz-grant section 4.3 (the client needs nothing of the
# provider's packages: the protocol's value, as the two above).
ID_JAG_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"


@dataclass(frozen=True)
class ExchangeResult:
    """The token response of RFC 8693 section 2.2.1."""

    access_token: str
    issued_token_type: str
    token_type: str
    expires_in: int
    scope: str
    expires_at: float
    #: the thumbprint of the key the token is bound to (``cnf.jkt``), None for a bearer token
    jkt: str | None = None
    #: what the user approved (RFC 9396 section 7), for a token obtained with the user's approval
    authorization_details: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)

    def __repr__(self) -> str:  # never print the token itself
        bound = f", jkt={self.jkt!r}" if self.jkt else ""
        return (
            f"ExchangeResult(token_type={self.token_type!r}, expires_in={self.expires_in}, "
            f"scope={self.scope!r}{bound})"
        )


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT this client holds, for cache keys and display only (not trusted)."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return {}


class AgentClient:
    """A confidential agent talking to the provider's endpoints.

    ``dpop``: False (bearer tokens), True (a new ES256 :class:`DPoPKey` for this agent), or the
    agent's own :class:`DPoPKey`; then every token request carries a proof and every token
    obtained is bound to the key."""

    #: seconds before expiry at which a cached token is no longer handed out
    REFRESH_MARGIN = 30
    #: revocation requests in all while the provider answers 503, and the longest wait between two
    REVOKE_ATTEMPTS = 4
    REVOKE_MAX_WAIT = 5.0

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        dpop: DPoPKey | bool = False,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.http = http or httpx.Client(timeout=timeout)
        self._metadata: dict[str, Any] | None = None
        self._cache: dict[tuple[str, tuple[str, ...], str], ExchangeResult] = {}
        self._lock = threading.Lock()
        self.sleep: Callable[[float], None] = time.sleep
        #: the clock of the approval's deadline and of wait_for_approval's timeout (tests inject one)
        self.clock: Callable[[], float] = time.monotonic
        self.dpop_key: DPoPKey | None = _dpop_key(dpop)
        #: the latest DPoP-Nonce of the provider and of each resource server called through auth()
        self.nonces = Nonces()

    def __repr__(self) -> str:
        bound = f", dpop={self.dpop_key!r}" if self.dpop_key else ""
        return f"AgentClient(issuer={self.issuer!r}, client_id={self.client_id!r}{bound})"

    @property
    def metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata, fetched once."""
        if self._metadata is None:
            response = self.http.get(f"{self.issuer}/.well-known/oauth-authorization-server")
            response.raise_for_status()
            data = response.json()
            if data.get("issuer") != self.issuer:
                raise OAuthError("invalid_issuer", "metadata names another issuer")
            self._metadata = data
        return self._metadata

    def _post(self, endpoint: str, data: list[tuple[str, str]]) -> dict[str, Any]:
        response = self.http.post(
            self.metadata[endpoint], data=_form(data), auth=(self.client_id, self._secret)
        )
        body = _body(response)
        if response.status_code != 200:
            raise OAuthError.from_response(response.status_code, body)
        return body if isinstance(body, dict) else {}

    def _token(self, data: list[tuple[str, str]], endpoint: str = "token_endpoint") -> dict[str, Any]:
        """A token request (or a backchannel authentication request: ``endpoint``), with a DPoP
        proof when the agent has a key; a ``use_dpop_nonce`` answer is retried once with the
        provider's nonce (RFC 9449 section 8)."""
        url = _url(self.metadata, endpoint)
        for attempt in (1, 2):
            headers, sent = _proof_header(self.dpop_key, self.nonces, url)
            response = self.http.post(
                url, data=_form(data), auth=(self.client_id, self._secret), headers=headers
            )
            if not _retry_with_nonce(self.dpop_key, self.nonces, url, response, sent, attempt):
                break
        return _token_response(self.dpop_key, response)

    def exchange(
        self,
        subject_token: str,
        *,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | None = None,
        actor_token: str | None = None,
        use_cache: bool = True,
    ) -> ExchangeResult:
        """Trade ``subject_token`` for a token addressed to the next hop (RFC 8693 section 2.1),
        bound to the agent's key if it has one (whether the subject token is bound or not)."""
        key, data = _exchange_form(subject_token, audience, resource, scope, actor_token)
        cacheable = use_cache and bool(key[0]) and actor_token is None
        if cacheable:
            with self._lock:
                cached = _usable(self._cache.get(key), self.REFRESH_MARGIN)
            if cached is not None:
                return cached
        result = _exchange_result(self._token(data), self.dpop_key)
        if cacheable:
            with self._lock:
                self._cache[key] = result
        return result

    def id_jag(
        self,
        subject_token: str,
        *,
        audience: str,
        resource: str | Sequence[str] | None = None,
        scope: str | None = None,
    ) -> ExchangeResult:
        """Trade ``subject_token`` for an ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant
        section 4.3) for the authorization server whose issuer is ``audience``: the grant the
        client then redeems there with RFC 7523's ``jwt-bearer`` grant. Never cached: that
        server accepts each ID-JAG once. ``token_type`` is ``N_A``."""
        return _exchange_result(self._token(_id_jag_form(subject_token, audience, resource, scope)))

    # -- the user in the loop (OpenID CIBA Core 1.0, poll mode) ------------------------------

    def ask_approval(
        self,
        subject_token: str,
        *,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | None = None,
        binding_message: str | None = None,
        authorization_details: ciba.Details | None = None,
        login_hint: str | None = None,
        requested_expiry: int | None = None,
        actor_token: str | None = None,
        requested_token_type: str | None = None,
    ) -> BackchannelAuthentication:
        """Ask the user to approve the exchange of ``subject_token`` for the next hop (a
        backchannel authentication request, CIBA Core section 7.1, at the metadata's
        ``backchannel_authentication_endpoint``), for a hop whose rule needs the user's
        approval: the same targets and scope as :meth:`exchange`, the ``binding_message``
        the user is shown and RFC 9396 ``authorization_details`` (objects with a ``type``).
        With a DPoP key, the request is proved with it, and so must every poll be.
        Then :meth:`wait_for_approval` (or :meth:`poll`) for the token."""
        form = _ask_form(
            subject_token,
            audience,
            resource,
            scope,
            actor_token,
            binding_message,
            authorization_details,
            login_hint,
            requested_expiry,
            requested_token_type,
        )
        body = self._token(form, ciba.METADATA_FIELD)
        return ciba.acknowledgement(body, self.clock(), _jkt(self.dpop_key))

    def poll(self, auth: BackchannelAuthentication) -> ExchangeResult:
        """One poll (CIBA Core section 10.1): the token once the user approved, with the
        approved ``authorization_details``; else :class:`AuthorizationPending`,
        :class:`SlowDown` (add :data:`~delegation_idp.client.ciba.SLOW_DOWN_STEP` seconds to the
        interval), :class:`AccessDenied`, :class:`ExpiredToken` or :class:`InvalidGrant`."""
        ciba.check_key(auth, _jkt(self.dpop_key))
        return _exchange_result(self._token(ciba.poll_form(auth)), self.dpop_key)

    def wait_for_approval(
        self, auth: BackchannelAuthentication, *, timeout: float | None = None
    ) -> ExchangeResult:
        """Poll until the user decides: at once, then every ``interval`` seconds (five more after
        each ``slow_down``), with ``self.sleep`` and ``self.clock``. The token once approved;
        :class:`AccessDenied` once denied, :class:`ExpiredToken` once the request expired,
        :class:`ApprovalTimeout` when the next poll would come after ``timeout`` seconds."""
        schedule = ciba.Schedule(auth, self.clock(), timeout)
        while True:
            try:
                return self.poll(auth)
            except OAuthError as refused:
                wait = schedule.after(refused, self.clock())
            logger.debug("waiting for the user's approval; polling again in %ss", wait)
            self.sleep(wait)

    def client_credentials(self, scope: str | None = None) -> dict[str, Any]:
        """The client credentials grant (RFC 6749 section 4.4): the token response."""
        data = [("grant_type", "client_credentials")]
        if scope:
            data.append(("scope", scope))
        return self._token(data)

    def authorization_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        """Redeem an authorization code with its PKCE verifier (RFC 6749 section 4.1.3, RFC 7636
        section 4.5): the token response."""
        return self._token(_code_form(code, redirect_uri, code_verifier))

    def refresh(self, refresh_token: str, scope: str | None = None) -> dict[str, Any]:
        """The refresh token grant (RFC 6749 section 6): the token response."""
        return self._token(_refresh_form(refresh_token, scope))

    def auth(self, token: str | ExchangeResult | Mapping[str, Any]) -> httpx.Auth:
        """The ``httpx.Auth`` that presents ``token`` (a token, an :class:`ExchangeResult` or
        a token response) to a resource server: :class:`DPoPAuth` with this agent's key for a
        token bound to it, ``Bearer`` for a token that is not bound."""
        return _auth_for(token, self.dpop_key, self.nonces)

    def introspect(self, token: str) -> dict[str, Any]:
        return self._post("introspection_endpoint", [("token", token)])

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation, retried on 503; :class:`RevocationFailed` if it did not happen."""
        url = self.metadata["revocation_endpoint"]
        for attempt in range(1, self.REVOKE_ATTEMPTS + 1):
            try:
                response: httpx.Response | None = self.http.post(
                    url,
                    data={"token": token, "token_type_hint": "access_token"},
                    auth=(self.client_id, self._secret),
                )
            except httpx.TransportError:  # unreachable, reset, timed out: as unavailable as a 503
                response = None
            wait = _revocation_outcome(self, token, response, attempt)
            if wait is None:
                return
            self.sleep(wait)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def _dpop_key(dpop: DPoPKey | bool) -> DPoPKey | None:
    if isinstance(dpop, DPoPKey):
        return dpop
    if dpop is True:
        return DPoPKey.generate()
    if dpop is False or dpop is None:
        return None
    raise TypeError("dpop is a DPoPKey, True (generate one) or False")


def _proof_header(key: DPoPKey | None, nonces: Nonces, url: str) -> tuple[dict[str, str], str | None]:
    """The ``DPoP`` header of a token request (none without a key), and the nonce it carries."""
    if key is None:
        return {}, None
    nonce = nonces.get(url)
    return {"DPoP": key.proof("POST", url, nonce=nonce)}, nonce


def _retry_with_nonce(
    key: DPoPKey | None, nonces: Nonces, url: str, response: httpx.Response, sent: str | None, attempt: int
) -> bool:
    """Keep the nonce the provider sent; True once, when it refused the proof for want of a
    nonce and sent a new one (a nonce it already refused is not tried again)."""
    fresh = nonces.remember(url, response) if key is not None else None
    if attempt > 1 or key is None or not asks_for_nonce(response, _body(response)):
        return False
    if fresh and fresh != sent:
        logger.debug("the provider asked for a DPoP nonce; retrying once with it")
        return True
    return False


def _token_response(key: DPoPKey | None, response: httpx.Response) -> dict[str, Any]:
    body = _body(response)
    if response.status_code != 200:
        raise OAuthError.from_response(response.status_code, body)
    body = body if isinstance(body, dict) else {}
    _bound_jkt(key, body)
    return body


def _bound_jkt(key: DPoPKey | None, body: Mapping[str, Any]) -> str | None:
    """The thumbprint the issued token is bound to: this agent's key when the provider answered
    ``token_type`` ``DPoP`` to its proof (RFC 9449 section 5), None for a bearer token. A token
    whose ``cnf.jkt`` names another key is refused: the agent could never present it."""
    if key is None or str(body.get("token_type", "")).lower() != "dpop":
        return None
    jkt = _cnf_jkt(str(body.get("access_token", "")))
    if jkt is not None and jkt != key.jkt:
        raise OAuthError("invalid_response", "the issued token is bound to another key", 200)
    return key.jkt


def _cnf_jkt(token: str) -> str | None:
    cnf = unverified_claims(token).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


def _auth_for(
    token: str | ExchangeResult | Mapping[str, Any], key: DPoPKey | None, nonces: Nonces
) -> httpx.Auth:
    if isinstance(token, ExchangeResult):
        access, bound = token.access_token, token.jkt
    elif isinstance(token, Mapping):
        access = str(token.get("access_token", ""))
        bound = _cnf_jkt(access) or (
            key.jkt if key and str(token.get("token_type")).lower() == "dpop" else None
        )
    else:
        access, bound = token, _cnf_jkt(token)
    if bound is None:
        return BearerAuth(access)
    if key is None or bound != key.jkt:
        raise ValueError("the token is bound to another key: only its holder can present it")
    return DPoPAuth(access, key, nonces)


def _code_form(code: str, redirect_uri: str, code_verifier: str) -> list[tuple[str, str]]:
    return [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
    ]


def _refresh_form(refresh_token: str, scope: str | None) -> list[tuple[str, str]]:
    data = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
    if scope:
        data.append(("scope", scope))
    return data


def _revocation_outcome(
    agent: Any, token: str, response: httpx.Response | None, attempt: int
) -> float | None:
    """None once revoked; the wait before the next try after a 503 or a network failure
    (``response`` None); else RevocationFailed."""
    if response is not None and response.status_code == 200:
        return None
    body: Any = {}
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = {}
    body = body if isinstance(body, dict) else {}
    status = response.status_code if response is not None else 503
    fallback = "revocation_failed" if response is not None else "temporarily_unavailable"
    error = str(body.get("error") or fallback)
    jti = unverified_claims(token).get("jti", "?")
    if status == 503 and attempt < agent.REVOKE_ATTEMPTS:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        wait = _retry_after(retry_after, attempt, agent.REVOKE_MAX_WAIT)
        logger.info("revocation of jti=%s unavailable (attempt %d); retrying in %.1fs", jti, attempt, wait)
        return wait
    answer = f"HTTP {status}" if response is not None else "the provider unreachable"
    logger.warning("token jti=%s was not revoked: %s (%s) after %d attempt(s)", jti, answer, error, attempt)
    raise RevocationFailed(error, f"the token was not revoked ({answer} after {attempt} attempt(s))", status)


def _retry_after(value: str | None, attempt: int, cap: float) -> float:
    """``Retry-After`` in seconds (RFC 9110 section 10.2.3; an HTTP date counts as the cap),
    or an exponential backoff without it; never more than ``cap``."""
    if value is not None and value.strip().isdigit():
        return min(float(value.strip()), cap)
    if value:
        return cap
    return min(0.5 * 2 ** (attempt - 1), cap)


_CacheKey = tuple[str, tuple[str, ...], str]


def _exchange_form(
    subject_token: str,
    audience: str | Sequence[str] | None,
    resource: str | Sequence[str] | None,
    scope: str | None,
    actor_token: str | None,
) -> tuple[_CacheKey, list[tuple[str, str]]]:
    """The cache key (subject ``jti``, targets, scope) and the RFC 8693 section 2.1 form."""
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    resources = [resource] if isinstance(resource, str) else list(resource or [])
    key = (
        str(unverified_claims(subject_token).get("jti", "")),
        tuple(sorted(audiences + resources)),
        " ".join(sorted((scope or "").split())),
    )
    data = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject_token),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ]
    data += [("audience", a) for a in audiences] + [("resource", r) for r in resources]
    if scope:
        data.append(("scope", scope))
    if actor_token:
        data += [("actor_token", actor_token), ("actor_token_type", ACCESS_TOKEN_TYPE)]
    return key, data


def _id_jag_form(
    subject_token: str, audience: str, resource: str | Sequence[str] | None, scope: str | None
) -> list[tuple[str, str]]:
    """The token-exchange form that asks for an ID-JAG: one audience, the server's issuer."""
    _key, data = _exchange_form(subject_token, audience, resource, scope, None)
    return [*data, ("requested_token_type", ID_JAG_TOKEN_TYPE)]


def _exchange_result(body: dict[str, Any], key: DPoPKey | None = None) -> ExchangeResult:
    """The RFC 8693 section 2.2.1 response as an :class:`ExchangeResult`."""
    if not isinstance(body.get("access_token"), str):
        raise OAuthError("invalid_response", "the token response has no access_token", 200)
    expires_in = int(body.get("expires_in", 0))
    return ExchangeResult(
        access_token=body["access_token"],
        issued_token_type=body.get("issued_token_type", ACCESS_TOKEN_TYPE),
        token_type=body.get("token_type", "Bearer"),
        expires_in=expires_in,
        scope=body.get("scope", ""),
        expires_at=time.time() + expires_in,
        jkt=_bound_jkt(key, body),
        authorization_details=ciba.approved_details(body),
    )


def _url(metadata: Mapping[str, Any], endpoint: str) -> str:
    """The URL of a metadata ``endpoint`` the client posts to."""
    return ciba.endpoint(metadata) if endpoint == ciba.METADATA_FIELD else str(metadata[endpoint])


def _jkt(key: DPoPKey | None) -> str | None:
    return key.jkt if key is not None else None


def _ask_form(
    subject_token: str,
    audience: str | Sequence[str] | None,
    resource: str | Sequence[str] | None,
    scope: str | None,
    actor_token: str | None,
    binding_message: str | None,
    authorization_details: ciba.Details | None,
    login_hint: str | None,
    requested_expiry: int | None,
    requested_token_type: str | None,
) -> list[tuple[str, str]]:
    """The backchannel authentication request: the token exchange's form, and CIBA's parameters."""
    _key, data = _exchange_form(subject_token, audience, resource, scope, actor_token)
    return ciba.backchannel_form(
        data,
        binding_message=binding_message,
        authorization_details=authorization_details,
        login_hint=login_hint,
        requested_expiry=requested_expiry,
        requested_token_type=requested_token_type,
    )


def _usable(result: ExchangeResult | None, margin: float) -> ExchangeResult | None:
    if result is not None and result.expires_at - margin > time.time():
        return result
    return None


def _form(data: list[tuple[str, str]]) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {}
    for name, value in data:
        form.setdefault(name, []).append(value)
    return form


class AsyncAgentClient:
    """:class:`AgentClient` for asyncio code (agents and MCP servers built on an event loop).

    Same discovery, cache and errors; use it as an async context manager, or call
    :meth:`aclose` when done if it created its own ``httpx.AsyncClient``.
    """

    REFRESH_MARGIN = AgentClient.REFRESH_MARGIN
    REVOKE_ATTEMPTS = AgentClient.REVOKE_ATTEMPTS
    REVOKE_MAX_WAIT = AgentClient.REVOKE_MAX_WAIT

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        dpop: DPoPKey | bool = False,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self._metadata: dict[str, Any] | None = None
        self._cache: dict[_CacheKey, ExchangeResult] = {}
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.clock: Callable[[], float] = time.monotonic
        self.dpop_key: DPoPKey | None = _dpop_key(dpop)
        self.nonces = Nonces()

    def __repr__(self) -> str:
        bound = f", dpop={self.dpop_key!r}" if self.dpop_key else ""
        return f"AsyncAgentClient(issuer={self.issuer!r}, client_id={self.client_id!r}{bound})"

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata, fetched once."""
        if self._metadata is None:
            response = await self.http.get(f"{self.issuer}/.well-known/oauth-authorization-server")
            response.raise_for_status()
            data = response.json()
            if data.get("issuer") != self.issuer:
                raise OAuthError("invalid_issuer", "metadata names another issuer")
            self._metadata = data
        return self._metadata

    async def _post(self, endpoint: str, data: list[tuple[str, str]]) -> dict[str, Any]:
        url = (await self.metadata())[endpoint]
        response = await self.http.post(url, data=_form(data), auth=(self.client_id, self._secret))
        body = _body(response)
        if response.status_code != 200:
            raise OAuthError.from_response(response.status_code, body)
        return body if isinstance(body, dict) else {}

    async def _token(self, data: list[tuple[str, str]], endpoint: str = "token_endpoint") -> dict[str, Any]:
        """:meth:`AgentClient._token`: a proof with the agent's key, one retry with a nonce."""
        url = _url(await self.metadata(), endpoint)
        for attempt in (1, 2):
            headers, sent = _proof_header(self.dpop_key, self.nonces, url)
            response = await self.http.post(
                url, data=_form(data), auth=(self.client_id, self._secret), headers=headers
            )
            if not _retry_with_nonce(self.dpop_key, self.nonces, url, response, sent, attempt):
                break
        return _token_response(self.dpop_key, response)

    async def exchange(
        self,
        subject_token: str,
        *,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | None = None,
        actor_token: str | None = None,
        use_cache: bool = True,
    ) -> ExchangeResult:
        """Trade ``subject_token`` for a token addressed to the next hop (RFC 8693 section 2.1),
        bound to the agent's key if it has one."""
        key, data = _exchange_form(subject_token, audience, resource, scope, actor_token)
        cacheable = use_cache and bool(key[0]) and actor_token is None
        if cacheable:
            cached = _usable(self._cache.get(key), self.REFRESH_MARGIN)
            if cached is not None:
                return cached
        result = _exchange_result(await self._token(data), self.dpop_key)
        if cacheable:
            self._cache[key] = result
        return result

    async def id_jag(
        self,
        subject_token: str,
        *,
        audience: str,
        resource: str | Sequence[str] | None = None,
        scope: str | None = None,
    ) -> ExchangeResult:
        """:meth:`AgentClient.id_jag`, asynchronously."""
        return _exchange_result(await self._token(_id_jag_form(subject_token, audience, resource, scope)))

    async def ask_approval(
        self,
        subject_token: str,
        *,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | None = None,
        binding_message: str | None = None,
        authorization_details: ciba.Details | None = None,
        login_hint: str | None = None,
        requested_expiry: int | None = None,
        actor_token: str | None = None,
        requested_token_type: str | None = None,
    ) -> BackchannelAuthentication:
        """:meth:`AgentClient.ask_approval`, asynchronously."""
        form = _ask_form(
            subject_token,
            audience,
            resource,
            scope,
            actor_token,
            binding_message,
            authorization_details,
            login_hint,
            requested_expiry,
            requested_token_type,
        )
        body = await self._token(form, ciba.METADATA_FIELD)
        return ciba.acknowledgement(body, self.clock(), _jkt(self.dpop_key))

    async def poll(self, auth: BackchannelAuthentication) -> ExchangeResult:
        """:meth:`AgentClient.poll`, asynchronously."""
        ciba.check_key(auth, _jkt(self.dpop_key))
        return _exchange_result(await self._token(ciba.poll_form(auth)), self.dpop_key)

    async def wait_for_approval(
        self, auth: BackchannelAuthentication, *, timeout: float | None = None
    ) -> ExchangeResult:
        """:meth:`AgentClient.wait_for_approval`, sleeping with ``asyncio.sleep`` (``self.sleep``)."""
        schedule = ciba.Schedule(auth, self.clock(), timeout)
        while True:
            try:
                return await self.poll(auth)
            except OAuthError as refused:
                wait = schedule.after(refused, self.clock())
            logger.debug("waiting for the user's approval; polling again in %ss", wait)
            await self.sleep(wait)

    async def client_credentials(self, scope: str | None = None) -> dict[str, Any]:
        data = [("grant_type", "client_credentials")]
        if scope:
            data.append(("scope", scope))
        return await self._token(data)

    async def authorization_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        return await self._token(_code_form(code, redirect_uri, code_verifier))

    async def refresh(self, refresh_token: str, scope: str | None = None) -> dict[str, Any]:
        return await self._token(_refresh_form(refresh_token, scope))

    def auth(self, token: str | ExchangeResult | Mapping[str, Any]) -> httpx.Auth:
        """:meth:`AgentClient.auth`: the same ``httpx.Auth`` serves an ``httpx.AsyncClient``."""
        return _auth_for(token, self.dpop_key, self.nonces)

    async def introspect(self, token: str) -> dict[str, Any]:
        return await self._post("introspection_endpoint", [("token", token)])

    async def revoke(self, token: str) -> None:
        """RFC 7009 revocation, retried on 503; :class:`RevocationFailed` if it did not happen."""
        url = (await self.metadata())["revocation_endpoint"]
        for attempt in range(1, self.REVOKE_ATTEMPTS + 1):
            try:
                response: httpx.Response | None = await self.http.post(
                    url,
                    data={"token": token, "token_type_hint": "access_token"},
                    auth=(self.client_id, self._secret),
                )
            except httpx.TransportError:  # unreachable, reset, timed out: as unavailable as a 503
                response = None
            wait = _revocation_outcome(self, token, response, attempt)
            if wait is None:
                return
            await self.sleep(wait)
