"""The seed's chain played by real services: user -> agent1 -> agent2 -> mcp-server1 -> resource server.

The provider serves in this process; agent1, agent2 (Starlette), mcp-server1
(the official MCP SDK, streamable HTTP) and the resource server (Django REST
framework, without the provider's models) each run as their own process on
their own port. Every hop is a separate HTTP call with a token addressed to
the callee, obtained by token exchange; the command prints the chain the
resource server saw.

Every hop is DPoP-bound (RFC 9449): each service generates a key of its own when it starts;
agent1 redeems the user's authorization code with a proof of its key, and every token a
service obtains by exchange is bound to that service's key, which it proves to the next hop
with every call. The command prints each service's key thumbprint (``jkt``) and the one each
received token is bound to, never a key or a token.

Then an unmodified MCP SDK client logs in on its own: the official SDK's
``OAuthClientProvider`` with a pre-registered public client (the stock MCP client),
discovering the provider from the MCP server's 401, the user signing in and consenting at
the provider's pages (a headless browser), and calling the MCP server's tool; the command
prints that call and the chain the resource server saw for it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import ThreadedWSGIServer, get_internal_wsgi_application

from delegation_idp.conf import idp_settings
from example_project.demo_services import launch
from example_project.demo_services.cast import seed_live, seed_stock_mcp_client
from example_project.demo_services.management.commands.demo import QuietHandler, authorization_code


class Command(BaseCommand):
    help = (
        "Play user -> agent1 -> agent2 -> mcp-server1 -> resource server with every party a real "
        "HTTP service (the MCP server on the official MCP SDK), and print the chain the resource "
        "server saw."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default=None, help="host:port of the provider (default: the issuer's)")
        parser.add_argument("--no-serve", action="store_true", help="Stop everything after one run.")
        parser.add_argument("--json", action="store_true", help="Print the trace as one JSON document.")
        parser.add_argument(
            "--redis-url",
            default=None,
            help="The resource server checks the Redis revocation set here (default: introspection).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        issuer = idp_settings.ISSUER
        parts = urlsplit(issuer)
        addr = options["addr"] or f"{parts.hostname}:{parts.port or 80}"
        host, _, port = addr.rpartition(":")
        call_command("migrate", verbosity=0, interactive=False)
        ports = launch.Ports.pick()
        cast = seed_live(mcp_url=ports.mcp_url, resource_url=ports.resource_prefix)
        stock = seed_stock_mcp_client()
        app = get_internal_wsgi_application()
        if settings.DEBUG:
            app = StaticFilesHandler(app)
        httpd = ThreadedWSGIServer((host, int(port)), QuietHandler)
        httpd.set_app(app)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            with (
                tempfile.TemporaryDirectory(prefix="demo_live-") as logs,
                launch.services(issuer, cast, ports, Path(logs), redis_url=options["redis_url"]) as running,
            ):
                try:
                    trace = launch.hand_agent1_the_code(ports, *authorization_code(issuer, cast))
                except RuntimeError as exc:
                    raise CommandError(f"{exc}\n" + "\n".join(running.log(r) for r in launch.ROLES)) from exc
                login, failure = self._sdk_login(ports, stock, cast)
                self._print(trace, ports, options["json"], login, failure)
                if failure:
                    service_logs = "\n".join(running.log(r) for r in launch.ROLES)
                    raise CommandError(f"the stock MCP client did not log in: {failure}\n{service_logs}")
                if options["no_serve"]:
                    return
                self.stdout.write(
                    f"\nServing: provider {issuer}, agent1 {ports.agent1_url}, agent2 {ports.agent2_url}, "
                    f"MCP server {ports.mcp_url}, resource server {ports.resource_url}. Ctrl-C stops them."
                )
                thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.shutdown()
            httpd.server_close()

    def _sdk_login(
        self, ports: launch.Ports, stock: dict[str, Any], cast: dict[str, Any]
    ) -> tuple[launch.SdkLogin | None, str]:
        """The stock MCP client logs in with the official SDK: its result, or why not."""
        try:
            return asyncio.run(launch.sdk_login(ports.mcp_url, stock, cast["user"])), ""
        except Exception as exc:
            return None, " ".join([f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", ())])

    def _print(
        self,
        trace: dict[str, Any],
        ports: launch.Ports,
        as_json: bool,
        login: launch.SdkLogin | None,
        failure: str,
    ) -> None:
        hops = launch.hops(trace)
        seen = hops[-1]["received"] or {}
        sdk = sdk_summary(login, failure)
        if as_json:
            urls = {
                "agent1": ports.agent1_url,
                "agent2": ports.agent2_url,
                "mcp-server1": ports.mcp_url,
                "resource-server": ports.resource_url,
            }
            document = {"hops": hops, "resource_server_saw": seen, "urls": urls, "sdk_login": sdk}
            self.stdout.write(json.dumps(document, indent=2))
            return
        keys = {hop["key"]: hop["party"] for hop in hops if hop.get("key")}
        for number, hop in enumerate(hops, start=1):
            received = hop["received"] or {}
            self.stdout.write(self.style.MIGRATE_HEADING(f"{number}. {hop['party']}"))
            if hop.get("key"):
                self.stdout.write(f"   its key:  jkt {hop['key']}")
            self.stdout.write(
                f"   received: sub {received.get('sub')}  aud {received.get('aud')}  "
                f"chain {' <- '.join(received.get('actors') or []) or '(the user directly)'}"
            )
            self.stdout.write(f"             {bound_to(received.get('jkt'), keys)}")
            if hop.get("sent"):
                self.stdout.write(
                    f"   sent on:  a new token, aud {hop['sent'].get('aud')}, "
                    f"{bound_to(hop['sent'].get('jkt'), keys)}"
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"\nThe resource server served {seen.get('sub')} through "
                f"{' <- '.join(seen.get('actors') or [])}"
            )
        )
        self.stdout.write(self.style.MIGRATE_HEADING("\nAn unmodified MCP SDK client logs in"))
        if failure:
            self.stdout.write(self.style.ERROR(f"   failed: {failure}"))
            return
        request, token, saw = sdk["authorization_request"], sdk["token"], sdk["resource_server_saw"]
        self.stdout.write(f"   consent page: {sdk['consent']}")
        self.stdout.write(
            f"   asked for: resource {request.get('resource')}  scope {request.get('scope')}  "
            f"PKCE {request.get('code_challenge_method')}  (answered with {', '.join(sdk['redirect'])})"
        )
        self.stdout.write(
            f"   its token: sub {token['sub']}  aud {token['aud']}  client_id {token['client_id']}  "
            f"act {token['act'] or '(none)'}"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"   {sdk['tool']}: the resource server served {saw.get('sub')} through "
                f"{' <- '.join(saw.get('actors') or [])}"
            )
        )


def bound_to(jkt: str | None, keys: dict[str, str]) -> str:
    """``bound to jkt <thumbprint> (<whose key>)``, or that the token is a bearer token."""
    if not jkt:
        return "a bearer token (not bound)"
    return f"bound to jkt {jkt} ({keys.get(jkt, 'an unknown key')}'s key)"


def sdk_summary(login: launch.SdkLogin | None, failure: str) -> dict[str, Any]:
    """What the stock MCP client's login showed: no token, code, or form field values."""
    if login is None:
        return {"error": failure}
    downstream = login.result.get("downstream") or {}
    return {
        "tools": login.tools,
        "tool": "list_tasks",
        "consent": login.consent.text if login.consent else None,
        "authorization_request": login.authorization_request,
        "redirect": login.authorization_response,
        "token": {k: login.token_claims.get(k) for k in ("iss", "sub", "aud", "client_id", "scope", "act")},
        "mcp_server_received": login.result.get("received"),
        "resource_server_saw": downstream.get("saw") or {},
    }
