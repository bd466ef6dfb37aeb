from typing import Any

from django.core.management.base import BaseCommand

from delegation_idp.provider import status_lists


class Command(BaseCommand):
    help = (
        "Sign again every Token Status List that changed since it was last signed "
        "(draft-ietf-oauth-status-list); --force signs every live list, --retire also retires "
        "the lists whose tokens have all expired."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="Sign every live list.")
        parser.add_argument("--retire", action="store_true", help="Retire lists whose tokens all expired.")

    def handle(self, *args: Any, **options: Any) -> None:
        retired = status_lists.retire_status_lists() if options["retire"] else 0
        signed = status_lists.publish_status_lists(force=options["force"])
        self.stdout.write(f"signed={signed} retired={retired}")
