"""Play the seed's delegation chain over real HTTP, print it, and keep serving."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler, get_internal_wsgi_application

from delegation_idp.client import AgentClient, unverified_claims
from delegation_idp.conf import idp_settings
from example_project.demo_services.seed import SCOPE, seed


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def user_token(issuer: str, cast: dict[str, Any]) -> str:
    """The user signs in at the site's own login page and authorizes agent1
    (authorization code with PKCE, RFC 7636); agent1 redeems the code."""
    agent1 = cast["agents"]["agent1"]
    code, verifier = authorization_code(issuer, cast)
    token = httpx.post(
        f"{issuer}/o/token/",
        data=redemption_form(agent1, code, verifier),
        auth=(agent1["client_id"], agent1["client_secret"]),
        timeout=30,
    )
    if token.status_code != 200:
        raise CommandError(f"the code was not redeemed: {token.json().get('error')}")
    return str(token.json()["access_token"])


def redemption_form(agent: dict[str, Any], code: str, verifier: str) -> dict[str, str]:
    """The token request that redeems ``agent``'s authorization code (RFC 6749 section
    4.1.3, with the PKCE verifier of RFC 7636)."""
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": agent["redirect_uri"],
        "code_verifier": verifier,
    }


def authorization_code(issuer: str, cast: dict[str, Any]) -> tuple[str, str]:
    """The user signs in and authorizes agent1; returns the code and its PKCE verifier."""
    agent1 = cast["agents"]["agent1"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx.Client(base_url=issuer, follow_redirects=False, timeout=30) as browser:
        page = browser.get("/accounts/login/")
        csrf = browser.cookies.get("csrftoken")
        response = browser.post(
            "/accounts/login/",
            data={
                "username": cast["user"]["username"],
                "password": cast["user"]["password"],
                "csrfmiddlewaretoken": csrf,
                "next": "/",
            },
            headers={"Referer": f"{issuer}/accounts/login/"},
        )
        if response.status_code != 302 or page.status_code != 200:
            raise CommandError("the demo user could not sign in")
        state = secrets.token_urlsafe(16)
        query = {
            "response_type": "code",
            "client_id": agent1["client_id"],
            "redirect_uri": agent1["redirect_uri"],
            "scope": SCOPE,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        consent = browser.get(f"/o/authorize/?{urlencode(query)}")
        if consent.status_code != 200:
            raise CommandError(f"authorization page answered {consent.status_code}")
        form = {
            k: html.unescape(v)
            for k, v in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', consent.text)
        }
        form.update({"allow": "Authorize", "csrfmiddlewaretoken": browser.cookies.get("csrftoken") or ""})
        approved = browser.post("/o/authorize/", data=form, headers={"Referer": f"{issuer}/o/authorize/"})
        location = approved.headers.get("Location", "")
        params = parse_qs(urlsplit(location).query)
        if approved.status_code != 302 or params.get("state") != [state] or "code" not in params:
            raise CommandError("the authorization did not return a code")
        return params["code"][0], verifier


def play(issuer: str, cast: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed's four steps; returns each hop's decoded header and claims."""
    agents = cast["agents"]
    clients = {name: AgentClient(issuer, a["client_id"], a["client_secret"]) for name, a in agents.items()}
    token = user_token(issuer, cast)
    hops = [{"step": "User authentication", "token": token}]
    for name, target, step in (
        ("agent1", agents["agent2"]["uri"], "Agent 1 delegates to agent 2"),
        ("agent2", agents["mcp-server1"]["uri"], "Agent 2 delegates to MCP server"),
        ("mcp-server1", cast["resource_server"]["uri"], "MCP server calls the resource server"),
    ):
        token = clients[name].exchange(token, audience=target).access_token
        hops.append({"step": step, "token": token})
    return [
        {"step": hop["step"], "header": _header(hop["token"]), "claims": unverified_claims(hop["token"])}
        for hop in hops
    ]


class Command(BaseCommand):
    help = (
        "Seed the cast, play user -> agent1 -> agent2 -> mcp-server1 -> resource server "
        "over HTTP, print every token, and keep serving."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default=None, help="host:port to serve on (default: the issuer's)")
        parser.add_argument("--no-serve", action="store_true", help="Exit after playing the chain.")
        parser.add_argument("--json", action="store_true", help="Print the hops as one JSON document.")

    def handle(self, *args: Any, **options: Any) -> None:
        issuer = idp_settings.ISSUER
        parts = urlsplit(issuer)
        addr = options["addr"] or f"{parts.hostname}:{parts.port or 80}"
        host, _, port = addr.rpartition(":")
        call_command("migrate", verbosity=0, interactive=False)
        cast = seed()
        app = get_internal_wsgi_application()
        if settings.DEBUG:
            app = StaticFilesHandler(app)
        httpd = ThreadedWSGIServer((host, int(port)), QuietHandler)
        httpd.set_app(app)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            hops = play(issuer, cast)
            if options["json"]:
                self.stdout.write(json.dumps({"hops": hops}, indent=2))
            else:
                for number, hop in enumerate(hops, start=1):
                    self.stdout.write(self.style.MIGRATE_HEADING(f"{number}. {hop['step']}"))
                    self.stdout.write("header: " + json.dumps(hop["header"]))
                    self.stdout.write("claims: " + json.dumps(hop["claims"], indent=2))
            if options["no_serve"]:
                return
            self.stdout.write(
                f"\nThe provider is serving on {issuer} (admin at {issuer}/admin/). "
                f"The seed's cast is registered; `python manage.py seed_demo --json` reissues its secrets. "
                "Ctrl-C stops it."
            )
            thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.shutdown()
            httpd.server_close()
