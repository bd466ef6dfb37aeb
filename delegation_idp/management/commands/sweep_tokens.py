from typing import Any

from django.core.management.base import BaseCommand, CommandError

from delegation_idp.lineage import retention


class Command(BaseCommand):
    help = (
        "Delete expired access tokens, lineage records past LINEAGE_RETENTION_SECONDS and audit "
        "events past AUDIT_RETENTION_SECONDS, in bounded batches."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, help="Rows per batch (default SWEEP_BATCH_SIZE).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be positive.")
        result = retention.sweep_expired(batch_size=options["batch_size"])
        self.stdout.write(
            f"access_tokens={result.access_tokens} lineage={result.lineage} audit={result.audit} "
            f"approvals={result.approvals}"
        )
