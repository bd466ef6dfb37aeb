"""``manage.py enableagent``: enable a party again, as the admin's *Enable* action does
(:func:`delegation_idp.provider.agents.set_enabled`). Idempotent. Tokens revoked when it
was disabled stay revoked."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from delegation_idp.management import cli
from delegation_idp.provider import agents


class Command(BaseCommand):
    help = "Enable an agent, MCP server or resource server again (its revoked tokens stay revoked)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("agent", help="Identity URI, client id or display name")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        party = cli.party(options["agent"])
        changed = agents.set_enabled(party, True)
        if options["json"]:
            cli.write_json(self, {"uri": party.uri, "enabled": True, "changed": changed})
        elif changed:
            self.stdout.write(f"Enabled {party}.")
        else:
            self.stdout.write(f"{party} was already enabled; nothing changed.")
