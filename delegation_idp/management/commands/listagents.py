"""``manage.py listagents``: every registered party with its rules and its last activity (the
latest audit event of its client id)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import OuterRef, Subquery

from delegation_idp.management import cli
from delegation_idp.models import AuditEvent, Party


def _activity(event: AuditEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "at": event.created.isoformat(),
        "event": event.event,
        "decision": event.decision,
        "reason": event.reason,
    }


class Command(BaseCommand):
    help = "List registered parties with their delegation rules and last activity."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--kind", choices=[k for k, _ in Party.KIND_CHOICES], help="Only parties of this kind"
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        latest = AuditEvent.objects.filter(client_id=OuterRef("application__client_id")).order_by(
            "-created", "-id"
        )
        parties = (
            Party.objects.select_related("application")
            .prefetch_related(
                "delegation_rules__actor",
                "delegation_rules__audiences",
                "delegation_rules__upstream_actors",
                "delegation_rules__users",
                "delegation_rules__groups",
            )
            .annotate(last_event_id=Subquery(latest.values("id")[:1]))
            .order_by("uri")
        )
        if options["kind"]:
            parties = parties.filter(kind=options["kind"])
        parties_list = list(parties)
        events = AuditEvent.objects.in_bulk([p.last_event_id for p in parties_list if p.last_event_id])
        rows = [
            {
                "uri": party.uri,
                "name": party.name,
                "kind": party.kind,
                "enabled": party.enabled,
                "registration": party.registration,
                "client_id": party.application.client_id if party.application else "",
                "dpop_required": party.dpop_required,
                "rules": [cli.rule_data(rule) for rule in party.delegation_rules.all()],
                "last_activity": _activity(events.get(party.last_event_id)),
            }
            for party in parties_list
        ]
        if options["json"]:
            cli.write_json(self, rows)
            return
        if not rows:
            self.stdout.write("No registered parties.")
        for row, party in zip(rows, parties_list, strict=True):
            self._write(row, party)

    def _write(self, row: dict[str, Any], party: Party) -> None:
        state = "enabled" if row["enabled"] else "DISABLED"
        client = f", client {row['client_id']}" if row["client_id"] else ""
        self.stdout.write(
            f"{row['name']} <{row['uri']}>: {party.get_kind_display().lower()}, {state}{client}"
        )
        activity = row["last_activity"]
        if activity:
            reason = f" ({activity['reason']})" if activity["reason"] else ""
            self.stdout.write(
                f"  last activity: {activity['at']} {activity['event']} {activity['decision']}{reason}"
            )
        elif row["client_id"]:
            self.stdout.write("  last activity: none")
        for rule in row["rules"]:
            self.stdout.write(f"  {cli.rule_text(rule)}")
        if not row["rules"] and row["kind"] in cli.ACTING_KINDS and not party.self_registered:
            self.stdout.write("  no rules: every exchange it asks for is refused (no_rule); see createrule")
        elif not row["rules"] and party.self_registered:
            self.stdout.write(f"  governed by the registration rules ({row['registration']})")
