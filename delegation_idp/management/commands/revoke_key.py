from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp.models import SigningKey
from delegation_idp.provider import rotation


class Command(BaseCommand):
    help = (
        "Emergency revocation of a compromised signing key: unpublish it at once, hand "
        "signing to a successor, and revoke every token it signed (with everything derived from them)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "kid",
            help="The key's kid (RFC 7638 thumbprint), as shown in the JWKS. New kids never begin "
            "with '-'; for an older one that does, put -- before it.",
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args: Any, **options: Any) -> None:
        kid = options["kid"]
        key = SigningKey.objects.filter(kid=kid).first()
        if key is None:
            raise CommandError("No signing key with that kid.")
        if key.state == SigningKey.REVOKED:
            raise CommandError("That key is already revoked.")
        if not options["yes"]:
            live = rotation.live_tokens_signed_by(kid)
            prompt = f"Revoke the {key.state} key {kid} and its {live} live tokens? [y/N] "
            try:
                answer = input(prompt)
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Aborted; nothing was revoked.")
        result = rotation.revoke_key(kid)
        successor = f"; {result.successor} signs now" if result.successor else ""
        self.stdout.write(f"revoked key {kid}; {result.tokens_revoked} tokens revoked{successor}")
