from typing import Any

from django.core.management.base import BaseCommand

from delegation_idp import keys


class Command(BaseCommand):
    help = "Advance the signing-key life cycle where it is due (idempotent); --force schedules a new key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="Publish a new next key now.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = keys.rotate_keys(force=options["force"])
        self.stdout.write(
            f"created={result.created or '-'} promoted={result.promoted or '-'} "
            f"retired={result.retired or '-'} removed={len(result.removed)}"
        )
