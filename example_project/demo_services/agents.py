"""agent1 and agent2 as small HTTP services (Starlette), without Django.

``POST /task`` with a token addressed to this agent: ``Authorization: DPoP <token>`` and a
``DPoP`` proof of the key it is bound to (RFC 9449 section 7.1), or ``Authorization: Bearer``
for a token that is not bound. The agent validates the token (:class:`TokenValidator`, its
own URI as the audience, the proof for this URL), exchanges it at the provider for a token
addressed to the next hop (:class:`AsyncAgentClient`, with a DPoP key of the agent's own:
the new token is bound to it), and calls that hop with the new token and a proof of its
key: agent1 calls agent2 over HTTP, agent2 calls the MCP server's tool with the official
MCP SDK client over streamable HTTP. The token received is never sent on.

``POST /authorized`` (agent1) takes the user's authorization code instead (JSON ``code``,
``code_verifier``): agent1 redeems it with a proof of its key, so the user's token is bound to
agent1 from the start and never leaves it, then goes on as ``/task`` does.

``POST /pay`` (agent2) is the sensitive hop: a payment at the resource server, whose rule
needs the user's approval every time. agent2 asks for it at the provider's backchannel
authentication endpoint (OpenID CIBA, :meth:`AsyncAgentClient.ask_approval`) with a
``binding_message`` and the payment as RFC 9396 ``authorization_details``, polls until the
user approved it on the provider's approval page (:meth:`AsyncAgentClient.wait_for_approval`,
the same key proving both), and calls the resource server's ``/api/payments/`` with the
approved token. agent1 hands the user's task there when its ``/authorized`` gets
``"task": "pay"``.

Every answer names the agent's key by its thumbprint (``jkt``), never the key or a token
(nor an ``auth_req_id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from delegation_idp.client import AsyncAgentClient, OAuthError, unverified_claims
from delegation_idp.resource_server.dpop import DPOP, dpop_challenge, read_authorization
from delegation_idp.resource_server.validation import (
    DelegatedToken,
    ProofRequest,
    ResourceServerConfig,
    TokenError,
    TokenValidator,
)


def describe(token: DelegatedToken) -> dict[str, Any]:
    return {
        "sub": token.subject,
        "actors": list(token.actors),
        "depth": token.depth,
        "jti": token.jti,
        "aud": list(token.audiences),
        "jkt": token.jkt,  # the key the token is bound to (RFC 9449 cnf.jkt), None if bearer
    }


def sent(token: str) -> dict[str, Any]:
    """The claims of a token this service sent, for the trace (never the token)."""
    claims = unverified_claims(token)
    cnf = claims.get("cnf")
    return {"jti": claims.get("jti"), "aud": claims.get("aud"), "jkt": cnf.get("jkt") if cnf else None}


@dataclass(frozen=True)
class AgentConfig:
    issuer: str
    uri: str
    client_id: str
    client_secret: str
    next_url: str  # agent2's /task, or the MCP server's /mcp
    next_audience: str | None = None  # exchange with `audience`; else with `resource=next_url`
    public_url: str = ""  # this agent's /task URL as callers use it: a proof's htu names it
    redirect_uri: str = ""  # agent1's, to redeem the user's authorization code
    payments_url: str = ""  # agent2's: the resource server's /api/payments/ (the sensitive hop)
    approval_wait: int = 300  # seconds a payment waits for the user's approval


#: The demo's payment (RFC 9396 section 2): what the user sees on the approval page, and what
#: the token for the payment carries once approved.
PAYMENT = {
    "type": "payment_initiation",
    "actions": ["initiate"],
    "instructedAmount": {"currency": "EUR", "amount": "123.50"},
    "creditorName": "Merchant A",
    "remittanceInformation": "Venue deposit",
}


def binding_message(payment: dict[str, Any]) -> str:
    """What the approval page shows next to the payment (CIBA Core section 7.1)."""
    amount = payment.get("instructedAmount") or {}
    return f"Pay {payment.get('creditorName')} {amount.get('amount')} {amount.get('currency')}"


def presented(request: Request, public_url: str) -> tuple[str, ProofRequest | None]:
    """The token of the request, and its proof request when it came with the DPoP scheme
    (``("", None)`` without a token of either scheme)."""
    credentials = read_authorization(request.headers.get("authorization", ""))
    if credentials is None:
        return "", None
    if credentials.scheme != DPOP:
        return credentials.token, None
    url = (public_url.rsplit("/", 1)[0] + request.url.path if public_url else str(request.url)).split("?", 1)[
        0
    ]
    return credentials.token, ProofRequest(tuple(request.headers.getlist("dpop")), request.method, url)


def refusal(exc: TokenError, uri: str, validator: TokenValidator) -> JSONResponse:
    bearer = f'Bearer realm="{uri}", error="{exc.error}"'
    dpop = dpop_challenge(validator.config.dpop_algorithms, exc.error, exc.description)
    headers = {"WWW-Authenticate": f"{dpop}, {bearer}"}
    nonce = validator.current_nonce()
    if nonce:
        headers["DPoP-Nonce"] = nonce
    return JSONResponse({"error": exc.error, "error_description": exc.description}, exc.status, headers)


def sdk_auth(auth: httpx.Auth) -> Any:
    """``auth`` (the agent client's, an ``httpx.Auth``) for the MCP SDK's ``httpx2`` client:
    both libraries drive an auth the same way (a generator of requests and responses)."""
    import httpx2

    class Adapted(httpx2.Auth):
        def auth_flow(self, request: Any) -> Any:
            return (yield from auth.auth_flow(request))

    return Adapted()


async def call_mcp_tool(
    url: str, token: str, tool: str, arguments: dict[str, Any], *, auth: httpx.Auth | None = None
) -> dict[str, Any]:
    """Call ``tool`` on the MCP server at ``url`` with the official SDK over streamable HTTP;
    ``auth`` presents the token (DPoP: a new proof for every request the SDK sends),
    else it goes as a bearer token."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {} if auth is not None else {"Authorization": f"Bearer {token}"}
    adapted = sdk_auth(auth) if auth is not None else None
    async with httpx2.AsyncClient(headers=headers, auth=adapted, timeout=httpx2.Timeout(30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"the MCP tool {tool} failed")
    return dict(result.structured_content or {})


def agent_app(config: AgentConfig, *, mcp_tool: str | None = None) -> Starlette:
    """agent1 (``mcp_tool`` None: the next hop is another agent) or agent2 (calls ``mcp_tool``)."""
    validator = TokenValidator(ResourceServerConfig(issuer=config.issuer, resource=config.uri))
    idp = AsyncAgentClient(config.issuer, config.client_id, config.client_secret, dpop=True)
    own_key = idp.dpop_key.jkt if idp.dpop_key else None

    async def onward(token: str, received: DelegatedToken, task: str = "task") -> JSONResponse:
        try:
            if config.next_audience:
                result = await idp.exchange(token, audience=config.next_audience)
            else:
                result = await idp.exchange(token, resource=config.next_url)
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "at": config.uri}, status_code=502)
        if mcp_tool is None:
            # A payment waits for the user's approval further down: as long as that may take.
            url = config.next_url.rsplit("/", 1)[0] + "/pay" if task == "pay" else config.next_url
            async with httpx.AsyncClient(timeout=60 + (config.approval_wait if task == "pay" else 0)) as http:
                response = await http.post(url, auth=idp.auth(result))
            downstream = response.json()
            if response.status_code != 200:
                return JSONResponse({"error": "downstream", "downstream": downstream}, status_code=502)
        else:
            downstream = await call_mcp_tool(
                config.next_url, result.access_token, mcp_tool, {}, auth=idp.auth(result)
            )
        return JSONResponse(
            {
                "party": config.uri,
                "key": own_key,
                "received": describe(received),
                "sent": sent(result.access_token),
                "downstream": downstream,
            }
        )

    async def task(request: Request) -> JSONResponse:
        token, proof = presented(request, config.public_url)
        try:
            received = await validator.avalidate(token, dpop=proof)
        except TokenError as exc:
            return refusal(exc, config.uri, validator)
        return await onward(token, received)

    async def pay(request: Request) -> JSONResponse:
        """The sensitive hop: the user approves the payment (CIBA), then the resource server."""
        token, proof = presented(request, config.public_url)
        try:
            received = await validator.avalidate(token, dpop=proof)
        except TokenError as exc:
            return refusal(exc, config.uri, validator)
        try:
            asked = await idp.ask_approval(
                token,
                resource=config.payments_url,
                scope="tasks.write",
                binding_message=binding_message(PAYMENT),
                authorization_details=[PAYMENT],
                requested_expiry=config.approval_wait,
            )
            approved = await idp.wait_for_approval(asked)
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "at": config.uri}, status_code=502)
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(config.payments_url, auth=idp.auth(approved))
        return JSONResponse(
            {
                "party": config.uri,
                "key": own_key,
                "received": describe(received),
                "asked": {
                    "binding_message": binding_message(PAYMENT),
                    "authorization_details": [PAYMENT],
                    "expires_in": asked.expires_in,
                    "interval": asked.interval,
                },
                "sent": {
                    **sent(approved.access_token),
                    "authorization_details": list(approved.authorization_details),
                },
                "downstream_status": response.status_code,
                "downstream": response.json(),
            },
            status_code=200 if response.status_code == 200 else 502,
        )

    async def authorized(request: Request) -> JSONResponse:
        """The user's authorization code, redeemed here with this agent's proof."""
        body = await request.json()
        try:
            issued = await idp.authorization_code(
                str(body.get("code", "")),
                redirect_uri=config.redirect_uri,
                code_verifier=str(body.get("code_verifier", "")),
            )
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "at": config.uri}, status_code=502)
        token = str(issued["access_token"])
        try:
            # Its own token, checked as any it receives (signature, audience), and bound to its key.
            received = await anyio.to_thread.run_sync(validator.verify, token)
        except TokenError as exc:
            return refusal(exc, config.uri, validator)
        if received.jkt != own_key:
            return JSONResponse({"error": "not_bound_to_this_agent", "at": config.uri}, status_code=502)
        return await onward(token, received, "pay" if body.get("task") == "pay" else "task")

    routes = [Route("/task", task, methods=["POST"])]
    if config.redirect_uri:
        routes.append(Route("/authorized", authorized, methods=["POST"]))
    if config.payments_url:
        routes.append(Route("/pay", pay, methods=["POST"]))
    return Starlette(routes=routes)
