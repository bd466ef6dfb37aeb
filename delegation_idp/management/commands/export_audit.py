from datetime import UTC, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime

from delegation_idp import audit


def moment(value: str | datetime | None) -> datetime | None:
    """An ISO 8601 date or date-time; naive values are UTC."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"Not an ISO 8601 date or date-time: {value!r}")
        parsed = datetime.combine(day, time.min)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Export audit events as JSON lines (one event per line, oldest first) for SIEM pipelines."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", help="Events at or after this time (ISO 8601, UTC).")
        parser.add_argument("--until", help="Events before this time (ISO 8601, UTC).")
        parser.add_argument("--decision", choices=["granted", "denied", "revoked"])
        parser.add_argument("--event", help="token, token_exchange or revocation.")
        parser.add_argument("--client", dest="client_id", help="Requesting client_id.")
        parser.add_argument("--user", dest="user_id", help="User primary key.")
        parser.add_argument("--subject", help="The token subject (sub).")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args: Any, **options: Any) -> None:
        filters = {k: options[k] for k in ("decision", "event", "client_id", "user_id", "subject")}
        filters["since"] = moment(options["since"])
        filters["until"] = moment(options["until"])
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be positive.")
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as stream:
                count = audit.export_events(stream, batch_size=options["batch_size"], **filters)
            self.stderr.write(f"exported {count} audit events")
        else:
            audit.export_events(self.stdout, batch_size=options["batch_size"], **filters)
