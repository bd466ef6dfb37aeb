"""``manage.py reissue_secret``: a new client secret for an agent, printed once.

Stored hashed as at registration (:func:`delegation_idp.provider.agents.reissue_secret`);
the old secret stops working at once. Not idempotent by nature: every run issues a new one.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp.management import cli
from delegation_idp.provider import agents


class Command(BaseCommand):
    help = (
        "Give an agent's client a new secret and print it once; the old secret stops working at "
        "once. Tokens already issued stay valid (disableagent revokes them)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("agent", help="Identity URI, client id or display name")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        party = cli.party(options["agent"])
        try:
            reg = agents.reissue_secret(party)
        except agents.SecretNotReissued as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            cli.write_json(
                self, {"uri": party.uri, "client_id": reg.client_id, "client_secret": reg.client_secret}
            )
            return
        self.stdout.write(f"New secret for {party.uri}; the old one no longer works.")
        self.stdout.write(f"client_id: {reg.client_id}")
        self.stdout.write(f"client_secret (shown once): {reg.client_secret}")
