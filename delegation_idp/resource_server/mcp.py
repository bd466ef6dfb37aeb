"""A token verifier for MCP servers built on the official ``mcp`` SDK.

The MCP authorization specification asks an MCP server to accept only tokens
issued for itself (audience validation) and never to pass a token it received
on to another service (no token passthrough). With this verifier the SDK's
bearer middleware refuses any token that :class:`TokenValidator` refuses,
including one addressed to another party; a tool that needs to call onwards
exchanges the token it received for a new one (RFC 8693)::

    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    url = "https://mcp.example.com/mcp"  # where clients connect: the SDK's RFC 9728 `resource`
    validator = TokenValidator(
        ResourceServerConfig(
            issuer=...,
            resource="https://mcp-server1.example.com",  # identity URI: the audience it is mapped to
            resource_urls=(url,),  # a token addressed to the URL itself (RFC 8707) is accepted too
        )
    )
    server = MCPServer(
        "mcp-server1",
        token_verifier=DelegationTokenVerifier(validator, resource_server_url=url),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=url,
            required_scopes=["tasks.read"],
            validate_token_resource=False,  # the verifier checks `aud` itself
        ),
    )

    @server.tool()
    async def list_tasks() -> dict:
        token = current_token()          # the DelegatedToken of this request
        onward = await agent.exchange(incoming_token(), resource="https://api.example.com/tasks")
        ...

``resource_server_url`` must be one of ``resource_urls`` (:class:`DelegationTokenVerifier`
refuses to start otherwise): the SDK serves the RFC 9728 document for it, and a client
that found this server there asks the provider for ``resource=<that URL>``.
``AccessToken.resource`` is the ``aud`` entry the token was accepted under.

DPoP-bound tokens (RFC 9449). The SDK's bearer middleware reads ``Authorization: Bearer``
only and hands its verifier the token string alone, so a proof can be checked only before
it runs: :class:`DpopAuthMiddleware`, a plain ASGI middleware added to the app the SDK
builds (Starlette's ``add_middleware``), checks a request that comes with
``Authorization: DPoP <token>`` and a ``DPoP`` proof, then lets the SDK's own
authentication see the token as its bearer credentials, already validated::

    app = server.streamable_http_app()
    app.add_middleware(DpopAuthMiddleware, verifier=verifier)

A bound token presented as a bearer token, with or without the middleware, is refused by
the verifier. The proof's ``htu`` must be the origin of ``resource_server_url`` (where
clients connect, whatever a proxy forwards) and the path the request arrived at; seen
proofs go to the validator's replay store (its revocation Redis when configured, shared
by every process; else this process's memory: run one process, or pass ``replay_store``),
and with ``dpop_nonce_lifetime`` set every proof needs a nonce (``DPoP-Nonce``).

Needs the ``mcp`` extra (``pip install delegation-idp[mcp]``).
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from pydantic import AnyHttpUrl, ConfigDict

from delegation_idp.resource_server.dpop import DPOP, dpop_challenge, read_authorization
from delegation_idp.resource_server.validation import (
    DelegatedToken,
    ProofRequest,
    ProviderUnavailable,
    TokenError,
    TokenValidator,
    same_resource,
)

__all__ = [
    "DelegatedAccessToken",
    "DelegationTokenVerifier",
    "DpopAuthMiddleware",
    "current_token",
    "incoming_token",
]

logger = logging.getLogger(__name__)


class DelegatedAccessToken(AccessToken):
    """The SDK's ``AccessToken`` with the validated :class:`DelegatedToken` attached."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    delegated: DelegatedToken

    def __repr__(self) -> str:  # the SDK's model would print the token itself
        return f"DelegatedAccessToken(subject={self.subject!r}, actors={list(self.delegated.actors)!r})"

    __str__ = __repr__


class DelegationTokenVerifier:
    """``mcp.server.auth.provider.TokenVerifier`` backed by :class:`TokenValidator`.

    ``resource_server_url``, when given, is the SDK's ``AuthSettings.resource_server_url``:
    it must be among the validator's ``resource_urls``, so that a token addressed to the
    URL the SDK's metadata names is accepted.
    """

    def __init__(self, validator: TokenValidator, *, resource_server_url: str | None = None) -> None:
        if resource_server_url is not None and not any(
            same_resource(str(resource_server_url), url) for url in validator.config.resource_urls
        ):
            raise ValueError(
                f"resource_server_url {resource_server_url!r} is not among the validator's resource_urls"
            )
        self.validator = validator
        self.resource_server_url = str(resource_server_url) if resource_server_url is not None else None

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's hook, with the bearer token of a request: a DPoP-bound token is refused,
        unless :class:`DpopAuthMiddleware` has just checked it with its proof."""
        checked = _checked.get()
        if checked is not None and hmac.compare_digest(checked.token, token):
            return checked.access
        try:
            delegated = await self.validator.avalidate(token)
        except TokenError as exc:
            # The reason code only: never the token.
            logger.info("MCP bearer token refused: %s", exc.reason)
            return None
        return self._access(token, delegated)

    async def verify_dpop(self, token: str, request: ProofRequest) -> DelegatedAccessToken:
        """A token presented with the DPoP scheme and its proof (RFC 9449 section 7.1);
        raises :class:`TokenError` (:class:`ProviderUnavailable` when it cannot be checked)."""
        delegated = await self.validator.avalidate(token, dpop=request)
        return self._access(token, delegated)

    def _access(self, token: str, delegated: DelegatedToken) -> DelegatedAccessToken:
        return DelegatedAccessToken(
            token=token,
            client_id=delegated.client_id,
            scopes=sorted(delegated.scopes),
            expires_at=delegated.expires_at,
            resource=delegated.audience or self.validator.config.resource,
            subject=delegated.subject,
            claims=dict(delegated.claims),
            delegated=delegated,
        )


@dataclass(frozen=True)
class _Checked:
    token: str
    access: DelegatedAccessToken

    def __repr__(self) -> str:  # never the token
        return f"_Checked({self.access!r})"


# The token of the request being handled, once DpopAuthMiddleware has checked it and its
# proof: set around the inner app only, so the SDK's verifier call within sees it.
_checked: contextvars.ContextVar[_Checked | None] = contextvars.ContextVar(
    "delegation_idp_dpop_checked", default=None
)


class DpopAuthMiddleware:
    """ASGI middleware: ``Authorization: DPoP <token>`` with a ``DPoP`` proof (RFC 9449
    section 7.1) for an MCP server whose SDK knows only bearer tokens.

    A DPoP request is checked here (token, then proof: :meth:`TokenValidator.validate`); a
    refusal is answered here with a ``DPoP`` challenge (``invalid_token``,
    ``invalid_dpop_proof`` or ``use_dpop_nonce``, and ``DPoP-Nonce`` where nonces are
    required); an accepted one goes on to the SDK with the token as its bearer credentials,
    which :meth:`DelegationTokenVerifier.verify_token` recognises as checked. Any other
    request goes on untouched, and a 401 from the SDK gets a ``DPoP algs=...`` challenge
    beside its ``Bearer`` one (section 7.2).
    """

    def __init__(
        self, app: Any, verifier: DelegationTokenVerifier, *, resource_server_url: str | None = None
    ):
        url = resource_server_url or verifier.resource_server_url
        if not url:
            raise ValueError("DpopAuthMiddleware needs the URL clients connect to (resource_server_url)")
        parts = urlsplit(url)
        self.app = app
        self.verifier = verifier
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.resource_metadata = str(build_resource_metadata_url(AnyHttpUrl(url)))
        self.algorithms = verifier.validator.config.dpop_algorithms

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorizations = [v for k, v in scope["headers"] if k.lower() == b"authorization"]
        dpop_scheme = any(v.split(b" ", 1)[0].lower() == DPOP.encode() for v in authorizations)
        if not dpop_scheme:
            await self.app(scope, receive, self._challenging(send))
            return
        try:
            if len(authorizations) != 1:
                raise TokenError("malformed", "The Authorization header is malformed.")
            credentials = read_authorization(authorizations[0])
            if credentials is None:  # not reached: the one header is of the DPoP scheme
                raise TokenError("malformed", "The Authorization header is malformed.")
            proofs = tuple(v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"dpop")
            request = ProofRequest(proofs=proofs, method=scope["method"], url=self.url_of(scope))
            access = await self.verifier.verify_dpop(credentials.token, request)
        except ProviderUnavailable as exc:
            await self._answer(send, exc.status, exc.error, exc.description, {})
            return
        except TokenError as exc:
            logger.info("MCP DPoP request refused: %s", exc.reason)
            www = dpop_challenge(
                self.algorithms, exc.error, exc.description, resource_metadata=self.resource_metadata
            )
            await self._answer(send, exc.status, exc.error, exc.description, {"www-authenticate": www})
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
        headers.append((b"authorization", b"Bearer " + credentials.token.encode("ascii")))
        reset = _checked.set(_Checked(credentials.token, access))
        try:
            await self.app({**scope, "headers": headers}, receive, self._as_dpop(send))
        finally:
            _checked.reset(reset)

    def url_of(self, scope: dict[str, Any]) -> str:
        """The URL a request was sent to, for its proof's ``htu``: ``resource_server_url``'s
        origin and the path as the request spelled it (``raw_path``, else ``path``)."""
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if isinstance(raw, bytes) else quote(scope["path"])
        return self.origin + path

    def _nonce_headers(self) -> list[tuple[bytes, bytes]]:
        nonce = self.verifier.validator.current_nonce()
        return [(b"dpop-nonce", nonce.encode())] if nonce is not None else []

    def _challenging(self, send: Any) -> Any:
        """``send`` with ``DPoP algs=...`` added to a 401 (the SDK's own carries ``Bearer``)."""

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                extra = (b"www-authenticate", dpop_challenge(self.algorithms).encode())
                message = {**message, "headers": [*message.get("headers", []), extra]}
            await send(message)

        return wrapped

    def _as_dpop(self, send: Any) -> Any:
        """``send`` for an accepted DPoP request: a fresh nonce where nonces are required, and
        a challenge the SDK raises (403 ``insufficient_scope``) in the DPoP scheme."""

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"www-authenticate" and value.startswith(b"Bearer "):
                        value = b"DPoP " + value[7:] + b', algs="' + " ".join(self.algorithms).encode() + b'"'
                    headers.append((name, value))
                message = {**message, "headers": [*headers, *self._nonce_headers()]}
            await send(message)

        return wrapped

    async def _answer(
        self, send: Any, status: int, error: str, description: str, extra: dict[str, str]
    ) -> None:
        body = json.dumps({"error": error, "error_description": description}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *((k.encode(), v.encode()) for k, v in extra.items()),
            *self._nonce_headers(),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def current_token() -> DelegatedToken | None:
    """The validated token of the MCP request being handled, or None."""
    access = get_access_token()
    return access.delegated if isinstance(access, DelegatedAccessToken) else None


def incoming_token() -> str | None:
    """The raw token of the MCP request being handled: to exchange, never to forward."""
    access = get_access_token()
    return access.token if access is not None else None
