from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from delegation_idp.provider import policy_store as rules
from delegation_idp.provider import policy_triggers as triggers


class Command(BaseCommand):
    help = (
        "(Re-)create the database triggers that change the policy version on every policy write "
        "(idempotent; migration 0002 creates them). Needed after a migration rebuilt a policy "
        "table on SQLite, or after the triggers were dropped or disabled (check delegation_idp.W003)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="The database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor not in triggers.VENDORS:
            raise CommandError(
                f"{connection.vendor} is not supported (SQLite and PostgreSQL are): "
                "the policy cache stays off there."
            )
        statements = triggers.install_statements(connection, apps)
        if connection.vendor == "postgresql":
            # Re-create rather than replace: CREATE OR REPLACE would keep a disabled trigger disabled.
            statements = triggers.uninstall_statements(connection, apps) + statements
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
        rules.forget()
        if not triggers.installed(connection):
            raise CommandError("The triggers could not be verified after installing them.")
        self.stdout.write("policy version triggers installed")
