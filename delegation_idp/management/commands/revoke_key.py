from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp import keys
from delegation_idp.models import SigningKey


class Command(BaseCommand):
    help = "Emergency revocation of a compromised signing key: unpublish it, revoke its tokens."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("kid")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args: Any, **options: Any) -> None:
        kid = options["kid"]
        if not SigningKey.objects.filter(kid=kid).exclude(state=SigningKey.REVOKED).exists():
            raise CommandError("No published key with that kid.")
        if not options["yes"]:
            answer = input(f"Revoke key {kid} and every token it signed? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Aborted.")
        count = keys.revoke_key(kid)
        self.stdout.write(f"revoked key {kid}; {count} tokens revoked")
