"""Start the live demo's four services as separate processes and play the chain.

Used by ``manage.py demo_live`` and by the end-to-end tests. Each service is
its own process on its own loopback port; every hop is an HTTP call.

:func:`sdk_login` is the other way in: an unmodified MCP SDK client
(``OAuthClientProvider``) logs in to the MCP server on its own, with a
:class:`HeadlessUser` at the browser signing in and consenting at the provider.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
ROLES = ("resource-server", "mcp-server1", "agent2", "agent1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    agent1: int
    agent2: int
    mcp: int
    resource: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())

    @property
    def agent1_url(self) -> str:
        return f"http://127.0.0.1:{self.agent1}/task"

    @property
    def agent2_url(self) -> str:
        return f"http://127.0.0.1:{self.agent2}/task"

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp}/mcp"

    @property
    def resource_prefix(self) -> str:
        return f"http://127.0.0.1:{self.resource}/api/"

    @property
    def resource_url(self) -> str:
        return f"http://127.0.0.1:{self.resource}/api/tasks/"

    @property
    def payments_url(self) -> str:
        """The sensitive hop's target: the user approves each payment (OpenID CIBA)."""
        return f"http://127.0.0.1:{self.resource}/api/payments/"


@dataclass
class Services:
    ports: Ports
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def log(self, role: str) -> str:
        path = self.logs.get(role)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def service_env(
    role: str, issuer: str, cast: dict[str, Any], ports: Ports, redis_url: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEMO_", "DJANGO_", "RESOURCE_"))}
    env.update({"DEMO_ISSUER": issuer, "IDP_ISSUER": issuer, "PYTHONUNBUFFERED": "1"})
    agents = cast["agents"]
    if role in ("agent1", "agent2", "mcp-server1"):
        agent = agents[role]
        env.update(
            {
                "DEMO_URI": agent["uri"],
                "DEMO_CLIENT_ID": agent["client_id"],
                "DEMO_CLIENT_SECRET": agent["client_secret"],
            }
        )
    if role == "agent1":
        env.update(
            {
                "DEMO_NEXT_URL": ports.agent2_url,
                "DEMO_NEXT_AUDIENCE": agents["agent2"]["uri"],
                "DEMO_PUBLIC_URL": ports.agent1_url,
                "DEMO_REDIRECT_URI": agents["agent1"]["redirect_uri"],
            }
        )
    elif role == "agent2":
        # exchanged with resource=<this URL> (RFC 8707); a payment waits for the user's approval
        env.update(
            {
                "DEMO_NEXT_URL": ports.mcp_url,
                "DEMO_PUBLIC_URL": ports.agent2_url,
                "DEMO_PAYMENTS_URL": ports.payments_url,
            }
        )
    elif role == "mcp-server1":
        env.update({"DEMO_PUBLIC_URL": ports.mcp_url, "DEMO_NEXT_URL": ports.resource_url})
    elif role == "resource-server":
        rs = cast["resource_server"]
        env.update({"RESOURCE_SERVER_URI": rs["uri"], "DJANGO_SECRET_KEY": "resource-server-demo-only"})
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        else:
            env.update(
                {
                    "RESOURCE_INTROSPECTION": "fallback",
                    "RESOURCE_CLIENT_ID": rs["client_id"],
                    "RESOURCE_CLIENT_SECRET": rs["client_secret"],
                }
            )
    return env


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@contextmanager
def services(
    issuer: str,
    cast: dict[str, Any],
    ports: Ports,
    log_dir: Path,
    *,
    redis_url: str | None = None,
    timeout: float = 90,
    roles: tuple[str, ...] = ROLES,
):
    """Start the four services (or those of ``roles``); stop them all on exit."""
    started = Services(ports)
    port_of = {
        "agent1": ports.agent1,
        "agent2": ports.agent2,
        "mcp-server1": ports.mcp,
        "resource-server": ports.resource,
    }
    try:
        for role in roles:
            path = log_dir / f"{role}.log"
            log: TextIO
            with open(path, "w") as log:
                started.logs[role] = path
                started.processes[role] = subprocess.Popen(
                    [sys.executable, "-m", "example_project.demo_services.serve", role, str(port_of[role])],
                    cwd=ROOT,
                    env=service_env(role, issuer, cast, ports, redis_url),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for role in roles:
            if not _wait_port(port_of[role], started.processes[role], timeout):
                raise RuntimeError(f"{role} did not start:\n{started.log(role)}")
        yield started
    finally:
        started.stop()


def ask_agent1(ports: Ports, user_token: str) -> dict[str, Any]:
    """The user's side: hand agent1 the task with the user's token (aud agent1)."""
    response = httpx.post(ports.agent1_url, headers={"Authorization": f"Bearer {user_token}"}, timeout=120)
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"agent1 answered {response.status_code}: {body}")
    return dict(body)


def hand_agent1_the_code(ports: Ports, code: str, verifier: str) -> dict[str, Any]:
    """The user's side with DPoP: agent1's callback receives the authorization code (and
    the PKCE verifier it made), redeems it with a proof of its own key, and carries the task
    on; the user's token is bound to agent1 and never leaves it."""
    response = httpx.post(
        ports.agent1_url.replace("/task", "/authorized"),
        json={"code": code, "code_verifier": verifier},
        timeout=120,
    )
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"agent1 answered {response.status_code}: {body}")
    return dict(body)


def hand_agent1_the_payment(
    ports: Ports, code: str, verifier: str, *, timeout: float
) -> tuple[int, dict[str, Any]]:
    """As :func:`hand_agent1_the_code`, for the sensitive task: agent1 hands it to agent2's
    ``/pay``, which waits for the user's approval (allow for it in ``timeout``). agent1's
    status and answer, whatever they are (an error names where the chain stopped)."""
    response = httpx.post(
        ports.agent1_url.replace("/task", "/authorized"),
        json={"code": code, "code_verifier": verifier, "task": "pay"},
        timeout=timeout,
    )
    return response.status_code, dict(response.json())


def hops(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The nested trace flattened: agent1, agent2, mcp-server1, resource server."""
    flat = []
    node: Any = trace
    while isinstance(node, dict) and "party" in node:
        flat.append({k: v for k, v in node.items() if k != "downstream"})
        node = node.get("downstream")
    if isinstance(node, dict):
        flat.append({"party": node.get("resource_server"), "received": node.get("saw"), "answer": node})
    return flat


# -- an unmodified MCP SDK client logs in ----------------------------------------------------


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(repr=False)  # named inputs a browser submits (a CSRF token)
    buttons: dict[str, str] = field(default_factory=dict)  # a browser sends the one clicked


@dataclass
class Page:
    """A page as the user sees it: its text (no markup, hidden fields or scripts) and forms."""

    url: str
    text: str
    forms: list[Form]


class _PageParser(HTMLParser):
    INVISIBLE = frozenset({"head", "script", "style", "template"})

    def __init__(self, url: str) -> None:
        super().__init__()
        self.page, self.hidden = Page(url, "", []), 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        forms = self.page.forms
        if tag in self.INVISIBLE:
            self.hidden += 1
        elif tag == "form":
            forms.append(Form(urljoin(self.page.url, attr.get("action") or self.page.url), {}))
        elif tag in ("input", "button") and forms and attr.get("name"):
            kind = attr.get("type", "submit" if tag == "button" else "text").lower()
            named = forms[-1].buttons if kind == "submit" else forms[-1].fields
            named[attr["name"]] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.INVISIBLE and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.page.text = f"{self.page.text} {' '.join(data.split())}".strip()


def read_page(url: str, html: str) -> Page:
    """What a user sees of the HTML page at ``url``: its text and its forms."""
    parser = _PageParser(url)
    parser.feed(html)
    return parser.page


class HeadlessUser:
    """The user at the browser, for a client that hands it an authorization URL.

    Opens the URL, follows the provider's redirects to its sign-in form, signs in (with the
    form's CSRF token), answers the consent form with "allow" (``check_consent(page)`` reads it
    first and may refuse by raising), and returns the redirect to the client's redirect URI
    (the authorization response) without following it."""

    def __init__(self, username: str, password: str, *, check_consent: Any = None) -> None:
        self.username, self.password, self.check_consent = username, password, check_consent
        self.consent: Page | None = None

    async def authorize(self, authorization_url: str) -> str:
        origin = urlsplit(authorization_url)[:2]
        async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
            response = await browser.get(authorization_url)
            for _ in range(12):
                if response.is_redirect:
                    location = urljoin(str(response.url), response.headers["location"])
                    if urlsplit(location)[:2] != origin:
                        return location  # off the provider: the authorization response
                    response = await browser.get(location)
                    continue
                if response.status_code != 200:
                    raise RuntimeError(f"{response.url} answered {response.status_code}")
                parser = _PageParser(str(response.url))
                parser.feed(response.text)
                form, data = self._answer(page := parser.page)
                response = await browser.post(
                    form.action, data={**form.fields, **data}, headers={"Referer": page.url}
                )
        raise RuntimeError("the provider never redirected back to the client")

    def _answer(self, page: Page) -> tuple[Form, dict[str, str]]:
        for form in page.forms:
            if "password" in form.fields:
                return form, {"username": self.username, "password": self.password}
            if "allow" in form.buttons:
                self.consent = page
                if self.check_consent is not None:
                    self.check_consent(page)
                return form, {"allow": form.buttons["allow"]}
        raise RuntimeError(f"neither a sign-in nor a consent form at {page.url}: {page.text[:300]}")


@dataclass
class MemoryTokenStorage:
    """The SDK's ``TokenStorage`` protocol in memory, holding a pre-registered client."""

    client_info: Any
    tokens: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


@dataclass
class SdkLogin:
    """What an unmodified MCP SDK client sent and got: claims, never a token or a code."""

    tools: list[str]
    result: dict[str, Any]  # the tool's structured result
    token_claims: dict[str, Any]  # of the access token the SDK obtained and sent to the MCP server
    authorization_request: dict[str, str]  # the query it sent to /authorize (no state, no challenge)
    authorization_response: list[str]  # the parameter names of the redirect back
    consent: Page | None


async def call_tool(mcp_url: str, auth: Any, tool: str, *, timeout: float) -> tuple[Any, Any]:
    """An MCP SDK client session on ``mcp_url`` (streamable HTTP) authenticated by ``auth`` (an
    SDK ``httpx2.Auth``): its tool list and the result of calling ``tool``. Raises what failed
    first, unwrapped from the SDK's task groups."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    try:
        with anyio.fail_after(timeout):
            async with (
                httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0)) as http,
                Client(streamable_http_client(mcp_url, http_client=http)) as session,
            ):
                return await session.list_tools(), await session.call_tool(tool, {})
    except BaseException as exc:
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup):  # the SDK's task groups wrap what failed
            leaf = leaf.exceptions[0]
        if leaf is exc:
            raise
        raise leaf from exc


async def sdk_login(
    mcp_url: str,
    client: dict[str, Any],
    user: dict[str, Any],
    *,
    tool: str = "list_tasks",
    check_consent: Any = None,
    timeout: float = 90,
    client_metadata_url: str | None = None,
) -> SdkLogin:
    """The official MCP SDK's ``OAuthClientProvider``, unmodified, with a pre-registered public
    ``client`` (``client_id``, ``redirect_uri``): the MCP server's 401 leads it through RFC 9728
    and RFC 8414 discovery to an authorization code with S256 PKCE and an RFC 8707 ``resource``,
    ``user`` signing in and consenting as a :class:`HeadlessUser`; then ``list_tools`` and
    ``call_tool(tool)`` over streamable HTTP. With ``client_metadata_url`` the client is not
    pre-registered: its client id is that URL (a client ID metadata document, which the
    provider fetches). Raises what failed first, unwrapped."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata

    from delegation_idp.client import unverified_claims

    registered = {"redirect_uris": [client["redirect_uri"]], "token_endpoint_auth_method": "none"}
    grants = ["authorization_code"]
    info = OAuthClientInformationFull(client_id=client["client_id"], grant_types=grants, **registered)
    storage = MemoryTokenStorage(None if client_metadata_url else info)
    browser = HeadlessUser(user["username"], user["password"], check_consent=check_consent)
    sent: dict[str, str] = {}
    back: dict[str, str] = {}

    async def redirect_handler(authorization_url: str) -> None:
        sent.update(parse_qsl(urlsplit(authorization_url).query))
        back.update(parse_qsl(urlsplit(await browser.authorize(authorization_url)).query))

    async def callback_handler() -> AuthorizationCodeResult:
        if "code" not in back:
            raise RuntimeError(f"authorization refused: {back.get('error')}: {back.get('error_description')}")
        return AuthorizationCodeResult(code=back["code"], state=back.get("state"), iss=back.get("iss"))

    oauth = OAuthClientProvider(
        mcp_url,
        OAuthClientMetadata(client_name="Stock MCP client", grant_types=grants, **registered),
        storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=client_metadata_url,
    )
    try:
        tools, result = await call_tool(mcp_url, oauth, tool, timeout=timeout)
    except BaseException as leaf:
        if storage.tokens is not None:  # what the MCP server was shown: claims, never the token
            leaf.add_note(f"the SDK obtained a token: {unverified_claims(storage.tokens.access_token)}")
        raise
    if result.is_error:
        raise RuntimeError(f"the MCP tool {tool} failed: {result.content}")
    return SdkLogin(
        tools=[t.name for t in tools.tools],
        result=dict(result.structured_content or {}),
        token_claims=unverified_claims(storage.tokens.access_token) if storage.tokens else {},
        authorization_request={k: v for k, v in sent.items() if k not in ("state", "code_challenge")},
        authorization_response=sorted(back),
        consent=browser.consent,
    )
