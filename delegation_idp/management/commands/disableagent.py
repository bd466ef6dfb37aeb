"""``manage.py disableagent``: disable a party and revoke its live tokens, as the admin's
*Disable* action does (:func:`delegation_idp.provider.agents.set_enabled`). Idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp.management import cli
from delegation_idp.provider import agents


class Command(BaseCommand):
    help = (
        "Disable an agent, MCP server or resource server: it may no longer obtain or exchange "
        "tokens, nor be their audience, and every live token naming it is revoked."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("agent", help="Identity URI, client id or display name")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        party = cli.party(options["agent"])
        live = agents.live_tokens_naming(party) if party.enabled else 0
        if party.enabled and not options["yes"]:
            # The prompt goes to stderr, so that --json output stays one JSON document.
            self.stderr.write(f"Disable {party} and revoke its {live} live tokens? [y/N] ", ending="")
            try:
                answer = input()
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Aborted; nothing was changed.")
        changed = agents.set_enabled(party, False)
        revoked = live - agents.live_tokens_naming(party) if changed else 0
        if options["json"]:
            cli.write_json(
                self, {"uri": party.uri, "enabled": False, "changed": changed, "tokens_revoked": revoked}
            )
        elif changed:
            self.stdout.write(f"Disabled {party}; {revoked} live tokens revoked.")
        else:
            self.stdout.write(f"{party} was already disabled; nothing changed.")
