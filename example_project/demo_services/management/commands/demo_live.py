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

Then a sensitive hop: the user hands agent1 a payment, and agent2's rule toward the resource
server's payments needs the user's approval every time. agent2 asks for it with OpenID CIBA
(a ``binding_message`` and the payment as RFC 9396 ``authorization_details``) and polls; the
command prints the approval page's URL and waits until the user, signed in there in a browser,
approves. With ``--auto-approve`` the command is that user: it signs in at the site's login page
with an HTTP session, loads the approval page, and presses the request's "Approve" (its form and
CSRF token; :mod:`example_project.demo_services.approval`). It prints the chain the resource
server saw for the payment, with the approved hop, and the approved ``authorization_details``.

With ``--enterprise``, two trust domains instead (:mod:`example_project.demo_services.enterprise`):
this process serves the tools domain's authorization server, which mcp-server1 and the resource
server trust; a second instance of the example site, the enterprise IdP, runs under gunicorn over
https with its own database and keys. The user signs in at the enterprise IdP, agent1 obtains an
ID-JAG there (RFC 8693), the official SDK's ``IdentityAssertionOAuthProvider`` redeems it here
(RFC 7523) and calls mcp-server1's tool; the command prints the ID-JAG's claims, the token
redeemed for it and the chain the resource server saw.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from django.test.utils import override_settings

from delegation_idp.conf import idp_settings
from example_project.demo_services import approval, enterprise, launch
from example_project.demo_services.agents import PAYMENT, binding_message
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
        parser.add_argument(
            "--auto-approve",
            action="store_true",
            help=(
                "The sensitive hop (a payment the user approves) is approved by the command itself, "
                "signed in as the demo user at the approval page; else it waits for you to approve it there."
            ),
        )
        parser.add_argument(
            "--enterprise",
            action="store_true",
            help=(
                "Two trust domains: a second instance of the site as the enterprise IdP issues agent1 "
                "an ID-JAG, which the MCP SDK redeems here to call mcp-server1."
            ),
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
        httpd, thread = self._serve(host, int(port))
        try:
            if options["enterprise"]:
                self._enterprise(issuer, cast, ports, options)
                return
            self._chain(issuer, cast, stock, ports, options, thread)
        except KeyboardInterrupt:
            pass
        finally:
            httpd.shutdown()
            httpd.server_close()

    def _serve(self, host: str, port: int) -> tuple[ThreadedWSGIServer, threading.Thread]:
        """The provider, served from this process in a thread."""
        app = get_internal_wsgi_application()
        if settings.DEBUG:
            app = StaticFilesHandler(app)
        httpd = ThreadedWSGIServer((host, port), QuietHandler)
        httpd.set_app(app)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        return httpd, thread

    def _chain(
        self,
        issuer: str,
        cast: dict[str, Any],
        stock: dict[str, Any],
        ports: launch.Ports,
        options: dict[str, Any],
        thread: threading.Thread,
    ) -> None:
        with (
            tempfile.TemporaryDirectory(prefix="demo_live-") as logs,
            launch.services(issuer, cast, ports, Path(logs), redis_url=options["redis_url"]) as running,
        ):
            try:
                trace = launch.hand_agent1_the_code(ports, *authorization_code(issuer, cast))
            except RuntimeError as exc:
                raise CommandError(f"{exc}\n" + "\n".join(running.log(r) for r in launch.ROLES)) from exc
            login, failure = self._sdk_login(ports, stock, cast)
            if not options["json"]:
                self._print(trace, ports, False, login, failure)
            payment = self._payment(issuer, cast, ports, options)
            if options["json"]:
                self._print(trace, ports, True, login, failure, payment)
            else:
                self._print_payment(payment, trace)
            service_logs = "\n".join(running.log(r) for r in launch.ROLES)
            if failure:
                raise CommandError(f"the stock MCP client did not log in: {failure}\n{service_logs}")
            if payment.get("failure"):
                raise CommandError(f"the sensitive hop failed: {payment['failure']}\n{service_logs}")
            if options["no_serve"]:
                return
            self.stdout.write(
                f"\nServing: provider {issuer}, agent1 {ports.agent1_url}, agent2 {ports.agent2_url}, "
                f"MCP server {ports.mcp_url}, resource server {ports.resource_url}. Ctrl-C stops them."
            )
            thread.join()

    def _enterprise(
        self, issuer: str, cast: dict[str, Any], ports: launch.Ports, options: dict[str, Any]
    ) -> None:
        """Two trust domains: the enterprise IdP in a second instance, this one the tools domain's."""
        roles = ("resource-server", "mcp-server1")
        agent1 = cast["agents"]["agent1"]
        with tempfile.TemporaryDirectory(prefix="demo_live-enterprise-") as work:
            with enterprise.enterprise_idp(
                Path(work), tools_issuer=issuer, mcp_url=ports.mcp_url, client_id_at_tools=agent1["client_id"]
            ) as idp:
                tools_client = enterprise.seed_tools_as(idp.issuer, idp.jwks_uri, cast)
                previous_ca = os.environ.get("SSL_CERT_FILE")
                # The enterprise IdP's certificate chains to the CA made for this run: this
                # process trusts it to fetch its JWK set and, as the agent, to call it.
                os.environ["SSL_CERT_FILE"] = str(idp.ca_path)
                fetcher = {**settings.DELEGATION_IDP, "ID_JAG_JWKS_FETCHER": enterprise.DEMO_JWKS_FETCHER}
                try:
                    with (
                        override_settings(DELEGATION_IDP=fetcher),
                        launch.services(issuer, cast, ports, Path(work), roles=roles) as running,
                    ):
                        try:
                            login = asyncio.run(
                                enterprise.enterprise_login(
                                    idp.issuer, issuer, ports.mcp_url, idp.cast, tools_client
                                )
                            )
                        except Exception as exc:
                            logs = "\n".join([*(running.log(r) for r in roles), idp.log.read_text()[-2000:]])
                            raise CommandError(f"{type(exc).__name__}: {exc}\n{logs}") from exc
                finally:
                    if previous_ca is None:
                        os.environ.pop("SSL_CERT_FILE", None)
                    else:
                        os.environ["SSL_CERT_FILE"] = previous_ca
        self._print_enterprise(login, idp.issuer, issuer, ports, options["json"])

    def _print_enterprise(
        self, login: enterprise.EnterpriseLogin, idp: str, tools: str, ports: launch.Ports, as_json: bool
    ) -> None:
        fields = ("iss", "sub", "aud", "client_id", "resource", "scope", "act")
        document = {
            "enterprise_idp": idp,
            "tools_authorization_server": tools,
            "mcp_server": ports.mcp_url,
            "id_jag": {k: login.id_jag.get(k) for k in ("typ", *fields)},
            "access_token": {k: login.access_token.get(k) for k in fields if k != "resource"},
            "tools": login.tools,
            "mcp_server_received": login.result.get("received"),
            "resource_server_saw": login.resource_server_saw,
        }
        if as_json:
            self.stdout.write(json.dumps(document, indent=2))
            return
        jag, token, saw = document["id_jag"], document["access_token"], document["resource_server_saw"]
        heading = self.style.MIGRATE_HEADING
        self.stdout.write(heading(f"1. The user signs in at the enterprise IdP {idp} and authorizes agent1"))
        self.stdout.write(heading("2. agent1 obtains an ID-JAG there (RFC 8693, leg 1)"))
        self.stdout.write(
            f"   typ {jag['typ']}  sub {jag['sub']}  aud {jag['aud']}  client_id {jag['client_id']}\n"
            f"   resource {jag['resource']}  scope {jag['scope']}  act {jag['act']}"
        )
        self.stdout.write(heading(f"3. The MCP SDK redeems it at {tools} (RFC 7523 jwt-bearer, leg 2)"))
        self.stdout.write(
            f"   sub {token['sub']}  aud {token['aud']}  client_id {token['client_id']}  "
            f"scope {token['scope']}  act {token['act']}"
        )
        self.stdout.write(
            heading(f"4. and calls list_tasks on mcp-server1 ({ports.mcp_url}), which trusts only {tools}")
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"   the resource server served {saw.get('sub')} through "
                f"{' <- '.join(saw.get('actors') or [])}"
            )
        )

    def _payment(
        self, issuer: str, cast: dict[str, Any], ports: launch.Ports, options: dict[str, Any]
    ) -> dict[str, Any]:
        """The sensitive hop: the user hands agent1 a payment; agent2 waits for the user's
        approval (OpenID CIBA) before it pays at the resource server. Its summary."""
        user = cast["user"]
        message = binding_message(PAYMENT)
        page = approvals_url(issuer)
        code, verifier = authorization_code(issuer, cast)
        answer: dict[str, Any] = {}

        def pay() -> None:
            try:
                answer["status"], answer["body"] = launch.hand_agent1_the_payment(
                    ports, code, verifier, timeout=APPROVAL_WAIT + 90
                )
            except Exception as exc:  # the services stopped, or agent1 never answered
                answer["status"], answer["body"] = 0, {"error": f"{type(exc).__name__}: {exc}"}

        paying = threading.Thread(target=pay, daemon=True)
        paying.start()
        seen: approval.Approval | None = None
        if options["auto_approve"]:
            try:
                seen = approval.approve_on_page(
                    issuer, user["username"], user["password"], binding_message=message
                )
            except RuntimeError as exc:  # agent2 keeps waiting: stopping the services ends it
                return {"failure": f"the approval page: {exc}"}
        else:
            out = self.stderr if options["json"] else self.stdout
            out.write(
                self.style.WARNING(
                    f"\nagent2 asks for your approval of a payment ({message}). Sign in at {page} as "
                    f"{user['username']} (the demo user's password is PASSWORD in "
                    f"example_project/demo_services/seed.py) and approve it; waiting up to {APPROVAL_WAIT} s."
                )
            )
        paying.join()
        return payment_summary(answer.get("status", 0), answer.get("body") or {}, seen, page)

    def _print_payment(self, payment: dict[str, Any], trace: dict[str, Any]) -> None:
        heading = self.style.MIGRATE_HEADING
        self.stdout.write(heading("\nA sensitive hop: agent2 pays, once the user approves (OpenID CIBA)"))
        asked = payment.get("asked") or {}
        if asked:
            self.stdout.write(
                f"   asked:    binding message {asked.get('binding_message')!r}, expires in "
                f"{asked.get('expires_in')} s, polled every {asked.get('interval')} s"
            )
        if payment.get("shown_on_page"):
            self.stdout.write(f"   the page showed the demo user: {payment['shown_on_page']}")
        if payment.get("approved_on_page"):
            self.stdout.write(
                f"   approved: on the approval page {payment['page']} (--auto-approve: signed in there)"
            )
        if payment.get("outcome") != "paid":
            self.stdout.write(
                self.style.ERROR(f"   not paid: {payment.get('failure') or payment.get('outcome')}")
            )
            return
        keys = {hop["key"]: hop["party"] for hop in launch.hops(trace) if hop.get("key")}
        sent = payment.get("token") or {}
        self.stdout.write(f"   its token: aud {sent.get('aud')}, {bound_to(sent.get('jkt'), keys)}")
        saw = payment.get("resource_server_saw") or {}
        self.stdout.write(
            self.style.SUCCESS(
                f"   the resource server initiated the payment for {saw.get('sub')} through "
                f"{' <- '.join(saw.get('actors') or [])}"
            )
        )
        self.stdout.write(
            f"   approved authorization_details: {json.dumps(payment.get('authorization_details'))}"
        )

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
        payment: dict[str, Any] | None = None,
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
            document = {
                "hops": hops,
                "resource_server_saw": seen,
                "urls": urls,
                "sdk_login": sdk,
                "sensitive_hop": payment,
            }
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


#: Seconds the sensitive hop waits for the user's approval (agent2's ``requested_expiry``).
APPROVAL_WAIT = 300


def approvals_url(issuer: str) -> str:
    return f"{issuer.rstrip('/')}{approval.APPROVALS}"


def payment_summary(
    status: int, body: dict[str, Any], seen: approval.Approval | None, page: str
) -> dict[str, Any]:
    """What the sensitive hop showed: agent2's request, the page's decision, the chain and the
    ``authorization_details`` the resource server saw; never a token or an ``auth_req_id``.
    ``outcome`` is ``paid``, or where and why the chain stopped (``access_denied``: the user
    denied it; ``expired_token``: nobody decided in time)."""
    node: Any = body
    while isinstance(node, dict) and isinstance(node.get("downstream"), dict) and "asked" not in node:
        node = node["downstream"]  # agent1's answer, then agent2's
    agent2 = node if isinstance(node, dict) else {}
    resource = agent2.get("downstream") if isinstance(agent2.get("downstream"), dict) else {}
    paid = status == 200 and resource.get("payment") == "initiated"
    summary: dict[str, Any] = {
        "outcome": "paid" if paid else str(agent2.get("error") or resource.get("error") or "failed"),
        "page": page,
        "approved_on_page": seen.approved if seen else None,
        "shown_on_page": seen.shown if seen else None,
        "asked": agent2.get("asked"),
        "agent2_key": agent2.get("key"),
        "token": agent2.get("sent"),
        "resource_server_saw": resource.get("saw"),
        "authorization_details": resource.get("authorization_details"),
    }
    if not paid and summary["outcome"] not in ("access_denied", "expired_token"):
        summary["failure"] = f"agent1 answered {status}: {body}"
    return summary


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
