from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp.conf import idp_settings
from delegation_idp.lineage import publication


class Command(BaseCommand):
    help = "Write every revoked, unexpired jti to the Redis revocation set (REVOCATION_REDIS_URL)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, help="Rows per batch (default SWEEP_BATCH_SIZE).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not idp_settings.REVOCATION_REDIS_URL:
            raise CommandError("REVOCATION_REDIS_URL is not set; nothing to publish to.")
        count = publication.publish_revocations(batch_size=options["batch_size"])
        self.stdout.write(f"published={count}")
