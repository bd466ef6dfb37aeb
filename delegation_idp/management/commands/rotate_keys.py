import json
from typing import Any

from django.core.management.base import BaseCommand

from delegation_idp.provider import rotation


class Command(BaseCommand):
    help = (
        "Advance the signing-key life cycle where it is due (idempotent; the Celery task "
        "delegation_idp.tasks.rotate_keys runs the same on a beat schedule). "
        "--force publishes a new next key now; it signs one JWKS cache lifetime later."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="Publish a new next key now.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = rotation.rotate_keys(force=options["force"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        self.stdout.write(
            f"created={result.created or '-'} promoted={result.promoted or '-'} "
            f"retired={result.retired or '-'} removed={len(result.removed)} "
            f"postponed={len(result.extended)} tokens_revoked={result.tokens_revoked}"
        )
