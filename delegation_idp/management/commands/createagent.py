"""``manage.py createagent``: register a party for automation; the secret is printed once.

An agent or MCP server starts without delegation rules, so every exchange it asks for is
refused: the command says so on stderr, with the ``createrule`` to run next.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from delegation_idp.management import cli
from delegation_idp.models import Party
from delegation_idp.provider.agents import register_party


class Command(BaseCommand):
    help = "Register an agent, MCP server or resource server (like oauth2_provider's createapplication)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("uri", help="Identity URI, e.g. https://agent1.example.com")
        parser.add_argument("--name", help="Display name (default: the URI's host)")
        parser.add_argument("--kind", choices=[k for k, _ in Party.KIND_CHOICES], default=Party.AGENT)
        parser.add_argument("--contact", default="")
        parser.add_argument("--redirect-uris", default="", help="Space-separated; enables authorization code")
        parser.add_argument("--client-id", default=None)
        parser.add_argument(
            "--resource-prefix",
            action="append",
            default=[],
            help="RFC 8707 resource URL prefix that means this party (repeatable)",
        )
        parser.add_argument(
            "--dpop-required",
            action="store_true",
            help="Every token the agent requests must be DPoP-bound (RFC 9449)",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        uri = options["uri"]
        name = options["name"] or uri.split("//", 1)[-1].split("/", 1)[0]
        try:
            reg = register_party(
                uri,
                name,
                options["kind"],
                contact=options["contact"],
                redirect_uris=options["redirect_uris"],
                client_id=options["client_id"],
                resource_prefixes="\n".join(options["resource_prefix"]),
                dpop_required=options["dpop_required"],
            )
        except ValidationError as exc:
            message = cli.validation_message(exc)
            if Party.objects.filter(uri=uri).exists():
                message += f" (`manage.py reissue_secret {uri}` gives it a new secret)"
            raise CommandError(message) from exc
        data = {
            "uri": reg.party.uri,
            "kind": reg.party.kind,
            "client_id": reg.client_id,
            "client_secret": reg.client_secret,
            "dpop_required": reg.party.dpop_required,
        }
        if options["json"]:
            cli.write_json(self, data)
        else:
            self.stdout.write(f"Registered {reg.party.kind} {reg.party.uri}")
            if reg.client_id:
                self.stdout.write(f"client_id: {reg.client_id}")
                self.stdout.write(f"client_secret (shown once): {reg.client_secret}")
        if reg.party.kind in cli.ACTING_KINDS:
            # On stderr, so that --json output stays one JSON document.
            self.stderr.write(self.style.WARNING(cli.no_rules_warning(reg.party)))
