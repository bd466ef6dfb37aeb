"""Database triggers that change the policy version on every write to the policy tables.

The per-process policy cache (:mod:`delegation_idp.rules`) is only correct if
every change to a party, a rule or a rule's link table changes
``PolicyVersion.version`` in the same transaction. Django's signals miss bulk
``QuerySet.update()``, raw SQL and other programs, so the database does it:

* PostgreSQL: one statement-level trigger per table, on ``INSERT``, ``UPDATE``,
  ``DELETE`` and ``TRUNCATE``, calling one function;
* SQLite: three row-level triggers per table (SQLite has no ``TRUNCATE``; its
  truncate optimisation is off for tables with triggers, so ``DELETE`` fires them).

Other databases get no triggers, and the cache stays off there. Migration 0002
installs them; :func:`installed` tells whether they are all present and
enabled, and the cache checks it once per process and connection. On SQLite,
a later migration that rebuilds one of these tables drops its triggers:
such a migration must call :func:`install` again (it is idempotent).
"""

from __future__ import annotations

from typing import Any

PREFIX = "delegation_idp_pv_"
FUNCTION = "delegation_idp_pv_bump"
VENDORS = frozenset({"postgresql", "sqlite"})
SQLITE_EVENTS = ("insert", "update", "delete")

__all__ = ["VENDORS", "install", "installed", "tables", "uninstall"]


def tables(apps: Any) -> list[str]:
    """The policy tables: parties, rules and the rules' four link tables."""
    party = apps.get_model("delegation_idp", "Party")
    rule = apps.get_model("delegation_idp", "DelegationRule")
    links = [
        rule._meta.get_field(name).remote_field.through._meta.db_table
        for name in ("audiences", "upstream_actors", "users", "groups")
    ]
    return [party._meta.db_table, rule._meta.db_table, *links]


def _name(table: str, event: str = "") -> str:
    """A trigger name within PostgreSQL's 63-byte limit."""
    short = table.removeprefix("delegation_idp_")
    return f"{PREFIX}{short}" + (f"_{event}" if event else "")


def _version_table(apps: Any, quote: Any) -> str:
    return str(quote(apps.get_model("delegation_idp", "PolicyVersion")._meta.db_table))


def install(schema_editor: Any, apps: Any) -> None:
    """Create (or replace) the triggers on this connection; a no-op on other databases."""
    connection = schema_editor.connection
    if connection.vendor not in VENDORS:
        return
    quote = connection.ops.quote_name
    version = _version_table(apps, quote)
    if connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608
            f'BEGIN UPDATE {version} SET "version" = gen_random_uuid()::text WHERE "id" = 1; '
            "RETURN NULL; END $$"
        )
        for table in tables(apps):
            schema_editor.execute(
                f"CREATE OR REPLACE TRIGGER {_name(table)} "
                f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {quote(table)} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
            )
        return
    for table in tables(apps):
        for event in SQLITE_EVENTS:
            schema_editor.execute(
                f"CREATE TRIGGER IF NOT EXISTS {_name(table, event)} AFTER {event.upper()} ON {quote(table)} "  # noqa: S608
                f'BEGIN UPDATE {version} SET "version" = lower(hex(randomblob(16))) WHERE "id" = 1; END'
            )


def uninstall(schema_editor: Any, apps: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor not in VENDORS:
        return
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        for table in tables(apps):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {_name(table)} ON {quote(table)}")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
        return
    for table in tables(apps):
        for event in SQLITE_EVENTS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {_name(table, event)}")


def installed(connection: Any) -> bool:
    """Every trigger is present (and, on PostgreSQL, enabled) on this connection's database."""
    from django.apps import apps

    if connection.vendor not in VENDORS:
        return False
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            expected = {_name(table) for table in tables(apps)}
            cursor.execute(
                "SELECT tgname FROM pg_trigger "
                "WHERE tgname LIKE %s AND NOT tgisinternal AND tgenabled <> 'D'",
                [PREFIX + "%"],
            )
        else:
            expected = {_name(table, event) for table in tables(apps) for event in SQLITE_EVENTS}
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s", [PREFIX + "%"]
            )
        present = {row[0] for row in cursor.fetchall()}
    return expected <= present
