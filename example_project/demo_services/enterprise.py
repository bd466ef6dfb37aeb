"""Two trust domains, two instances of the example site: enterprise-managed authorization
(the MCP Enterprise-Managed Authorization extension, draft-ietf-oauth-identity-assertion-authz-grant).

* **The enterprise IdP** (instance A) is where the user signs in. agent1 is one of its
  agents; a delegation rule lets agent1 obtain ID-JAGs for the tools domain's authorization
  server, registered at A as an external authorization server (:func:`seed_enterprise_idp`).
* **The tools domain's authorization server** (instance B) serves mcp-server1 and the resource
  server behind it. It trusts A as an ID-JAG issuer, for agent1's client there and for
  mcp-server1 only, with users created just in time (:func:`seed_tools_as`). mcp-server1
  trusts B alone: it never sees a token of A's.

:func:`enterprise_login` plays the agent: the user signs in at A and authorizes agent1
(authorization code with PKCE); agent1 trades the user's token at A for an ID-JAG addressed to
B (leg 1, this package's :class:`~delegation_idp.client.AsyncAgentClient`), and the official MCP
SDK's ``IdentityAssertionOAuthProvider``, unmodified, redeems it at B (leg 2, RFC 7523) and
calls mcp-server1's tool, which exchanges its token at B for the resource server.

:func:`enterprise_idp` starts instance A for the demo: the example site under gunicorn over
https (a certificate of a CA made for the run, :mod:`example_project.demo_services.tls`), with
a SQLite database and keys of its own in a temporary directory.

Used by ``manage.py demo_live --enterprise`` and by tests/e2e/idjag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.db import transaction
from oauth2_provider.models import get_application_model

from example_project.demo_services.launch import ROOT, HeadlessUser, MemoryTokenStorage, call_tool, free_port
from example_project.demo_services.seed import CAST, RESOURCE_SERVER, SCOPE

#: What agent1 asks for in the tools domain, and at most what A's rule lets it have there.
TOOLS_SCOPE = "tasks.read"
#: The demo's ``ID_JAG_JWKS_FETCHER`` at B: the shipped fetcher with loopback counted as public.
DEMO_JWKS_FETCHER = "example_project.demo_services.tls.LoopbackFetcher"


@transaction.atomic
def seed_enterprise_idp(tools_issuer: str, mcp_url: str, client_id_at_tools: str) -> dict[str, Any]:
    """Instance A: the seed's cast (the user, agent1), the tools domain's authorization server
    ``tools_issuer`` as an external authorization server whose resources are under
    ``mcp_url``, knowing agent1 by ``client_id_at_tools``, and the rule that lets agent1 obtain
    ID-JAGs for it, directly from a user's token, with at most :data:`TOOLS_SCOPE`."""
    from delegation_idp.models import DelegationRule, Party
    from delegation_idp.provider.agents import allow
    from example_project.demo_services.seed import seed

    cast = seed()
    agent1 = Party.objects.get(uri=CAST["agent1"][0])
    server, _ = Party.objects.update_or_create(
        uri=tools_issuer,
        defaults={
            "name": "Tools domain authorization server",
            "kind": Party.AUTHORIZATION_SERVER,
            "enabled": True,
            "metadata_url": f"{tools_issuer}/.well-known/oauth-authorization-server",
            "resource_prefixes": mcp_url,
            "client_ids": {agent1.uri: client_id_at_tools},
        },
    )
    server.full_clean()
    DelegationRule.objects.filter(actor=agent1, audiences=server).delete()
    allow(
        agent1,
        [server],
        TOOLS_SCOPE,
        direct_from_user=True,
        description="agent1 reaches the tools domain with an ID-JAG",
    )
    cast["tools_authorization_server"] = {"issuer": tools_issuer, "resource": mcp_url}
    return cast


@transaction.atomic
def seed_tools_as(idp_issuer: str, jwks_uri: str, cast: dict[str, Any]) -> dict[str, Any]:
    """Instance B, after :func:`~example_project.demo_services.cast.seed_live`: the enterprise
    IdP ``idp_issuer`` trusted for ID-JAGs (its keys at ``jwks_uri``) that agent1's client here
    redeems for mcp-server1, with users created just in time; mcp-server1 carries on chains
    that agent1 began. Returns what the agent needs here: agent1's client credentials."""
    from delegation_idp.models import DelegationRule, Party, TrustedIssuer

    Application = get_application_model()
    agent1 = cast["agents"]["agent1"]
    trusted, _ = TrustedIssuer.objects.update_or_create(
        issuer=idp_issuer,
        defaults={
            "name": "Enterprise IdP",
            "jwks_uri": jwks_uri,
            "algorithms": "ES256",
            "enabled": True,
            "user_mapping": TrustedIssuer.JUST_IN_TIME,
        },
    )
    trusted.full_clean()
    trusted.clients.set([Application.objects.get(client_id=agent1["client_id"])])
    mcp_server = Party.objects.get(uri=CAST["mcp-server1"][0])
    trusted.services.set([mcp_server])
    for rule in DelegationRule.objects.filter(actor=mcp_server):
        rule.upstream_actors.add(Party.objects.get(uri=CAST["agent1"][0]))
    return {"client_id": agent1["client_id"], "client_secret": agent1["client_secret"], "uri": agent1["uri"]}


@dataclass
class EnterpriseLogin:
    """What the agent sent and got across the two domains: claims, never a token or a code."""

    user_token: dict[str, Any]  # A's token for agent1 (leg 1's subject token)
    id_jag: dict[str, Any]  # the ID-JAG A issued (the header's typ under "typ")
    access_token: dict[str, Any]  # B's token, which the SDK obtained and sent to mcp-server1
    tools: list[str]
    result: dict[str, Any]  # the tool's structured result (mcp-server1's trace, downstream included)

    @property
    def resource_server_saw(self) -> dict[str, Any]:
        return dict((self.result.get("downstream") or {}).get("saw") or {})


async def enterprise_login(
    idp_issuer: str,
    tools_issuer: str,
    mcp_url: str,
    idp_cast: dict[str, Any],
    tools_client: dict[str, Any],
    *,
    tool: str = "list_tasks",
    timeout: float = 90,
) -> EnterpriseLogin:
    """The user signs in at the enterprise IdP and authorizes agent1; agent1 gets an ID-JAG for
    the tools domain (leg 1) when the MCP SDK's ``IdentityAssertionOAuthProvider`` asks for one,
    the SDK redeems it at ``tools_issuer`` (leg 2) with agent1's client there (``tools_client``)
    and calls ``tool`` on ``mcp_url``. Raises what failed first, unwrapped."""
    from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

    from delegation_idp.client import AsyncAgentClient, unverified_claims

    agent = idp_cast["agents"]["agent1"]
    idp = AsyncAgentClient(idp_issuer, agent["client_id"], agent["client_secret"])
    subject_token = await user_token(idp, idp_issuer, agent, idp_cast["user"])
    seen: dict[str, Any] = {}

    async def assertion_provider(audience: str, resource: str) -> str:
        # Leg 1 at the enterprise IdP: the SDK names the audience (its configured issuer) and
        # the MCP server's resource identifier, which the ID-JAG must carry.
        grant = await idp.id_jag(subject_token, audience=audience, resource=resource, scope=TOOLS_SCOPE)
        header = _header(grant.access_token)
        seen["id_jag"] = {**unverified_claims(grant.access_token), "typ": header.get("typ")}
        seen["issued_token_type"] = grant.issued_token_type
        return grant.access_token

    storage = MemoryTokenStorage(None)
    oauth = IdentityAssertionOAuthProvider(
        server_url=mcp_url,
        storage=storage,
        client_id=tools_client["client_id"],
        client_secret=tools_client["client_secret"],
        issuer=tools_issuer,
        assertion_provider=assertion_provider,
        scope=TOOLS_SCOPE,
    )
    try:
        tools, result = await call_tool(mcp_url, oauth, tool, timeout=timeout)
    finally:
        await idp.aclose()
    if result.is_error:
        raise RuntimeError(f"the MCP tool {tool} failed: {result.content}")
    return EnterpriseLogin(
        user_token=unverified_claims(subject_token),
        id_jag=dict(seen.get("id_jag") or {}),
        access_token=unverified_claims(storage.tokens.access_token) if storage.tokens else {},
        tools=[t.name for t in tools.tools],
        result=dict(result.structured_content or {}),
    )


async def user_token(idp: Any, issuer: str, agent: dict[str, Any], user: dict[str, str]) -> str:
    """The user signs in at ``issuer`` and authorizes agent1 (S256 PKCE); agent1 redeems the code."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": agent["client_id"],
        "redirect_uri": agent["redirect_uri"],
        "scope": SCOPE,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    browser = HeadlessUser(user["username"], user["password"])
    back = dict(
        parse_qsl(urlsplit(await browser.authorize(f"{issuer}/o/authorize/?{urlencode(query)}")).query)
    )
    if back.get("state") != state or "code" not in back:
        raise RuntimeError(f"the enterprise IdP refused the authorization: {back.get('error')}")
    tokens = await idp.authorization_code(
        back["code"], redirect_uri=agent["redirect_uri"], code_verifier=verifier
    )
    return str(tokens["access_token"])


def _header(token: str) -> dict[str, Any]:
    encoded = token.split(".", 1)[0]
    return dict(json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))))


@dataclass(frozen=True)
class EnterpriseIdp:
    """Instance A, running: its issuer, its seed's cast and the CA file its certificate chains to."""

    issuer: str
    cast: dict[str, Any]
    ca_path: Path
    log: Path

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"


@contextmanager
def enterprise_idp(
    workdir: Path, *, tools_issuer: str, mcp_url: str, client_id_at_tools: str, timeout: float = 90
) -> Iterator[EnterpriseIdp]:
    """Instance A under gunicorn over https on a free loopback port, migrated and seeded by
    ``manage.py seed_enterprise_idp`` (:func:`seed_enterprise_idp`); stopped on exit."""
    from cryptography.fernet import Fernet

    from example_project.demo_services.tls import make_authority

    authority = make_authority(workdir / "tls")
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_", "IDP_", "DEMO_"))}
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "IDP_ISSUER": issuer,
            "IDP_KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{workdir / 'enterprise-idp.sqlite3'}",
            "PYTHONUNBUFFERED": "1",
        }
    )

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the enterprise IdP's manage.py {args[0]} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    manage("migrate", "--no-input")
    cast = json.loads(
        manage(
            "seed_enterprise_idp",
            "--tools-issuer",
            tools_issuer,
            "--mcp-url",
            mcp_url,
            "--client-id",
            client_id_at_tools,
        )
    )
    log = workdir / "enterprise-idp.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "example_project.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--no-control-socket",
                "--certfile",
                str(authority.cert_path),
                "--keyfile",
                str(authority.key_path),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_https(f"{issuer}/.well-known/oauth-authorization-server", authority.ca_path, proc, timeout, log)
        yield EnterpriseIdp(issuer, cast, authority.ca_path, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _wait_https(url: str, ca_path: Path, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    import httpx

    context = ssl.create_default_context(cafile=ca_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url, verify=context, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the enterprise IdP did not start:\n{log.read_text(errors='replace')[-2000:]}")


__all__ = [
    "DEMO_JWKS_FETCHER",
    "RESOURCE_SERVER",
    "TOOLS_SCOPE",
    "EnterpriseIdp",
    "EnterpriseLogin",
    "enterprise_idp",
    "enterprise_login",
    "seed_enterprise_idp",
    "seed_tools_as",
    "user_token",
]
