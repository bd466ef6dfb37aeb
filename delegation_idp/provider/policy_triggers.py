"""Database triggers that change the policy version on every write to the policy tables.

The per-process policy cache (:mod:`delegation_idp.provider.policy_store`) is only correct if
every change to a party, a rule or a rule's link table changes
``PolicyVersion.version`` in the same transaction. Django's signals miss bulk
``QuerySet.update()``, raw SQL and other programs, so the database does it:

* PostgreSQL: one statement-level trigger per table, before ``INSERT``, ``UPDATE``,
  ``DELETE`` and ``TRUNCATE``, calling one function;
* SQLite: three row-level triggers per table (SQLite has no ``TRUNCATE``; its
  truncate optimisation is off for tables with triggers, so ``DELETE`` fires them).

Other databases get no triggers, and the cache stays off there. Migration 0002
installs them, and migration 0004 adds the one of the client allow-list;
:func:`installed` tells whether they are all present and enabled on the right
tables, and each process checks it again every minute.
On SQLite, a later migration that rebuilds one of these tables drops its
triggers: such a migration must call :func:`install` again (it is idempotent),
as ``manage.py install_policy_triggers`` does.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as app_registry
from django.core.exceptions import FieldDoesNotExist

PREFIX = "delegation_idp_pv_"
FUNCTION = "delegation_idp_pv_bump"
VENDORS = frozenset({"postgresql", "sqlite"})
SQLITE_EVENTS = ("insert", "update", "delete")

__all__ = [
    "VENDORS",
    "install",
    "install_statements",
    "installed",
    "tables",
    "uninstall",
    "uninstall_statements",
]


# Many-to-many fields whose link tables are policy: (model, field).
LINK_FIELDS = (
    ("DelegationRule", "audiences"),
    ("DelegationRule", "upstream_actors"),
    ("DelegationRule", "users"),
    ("DelegationRule", "groups"),
    ("Party", "clients"),  # the audience allow-list of applications that are not parties
    ("RegistrationRule", "audiences"),  # what self-registered clients may reach
)
# Further policy tables, each added by a later migration than the first two.
MODELS = ("RegistrationRule",)


def tables(apps: Any) -> list[str]:
    """The policy tables: parties, rules, the rules' four link tables, the parties' client
    allow-list, and the registration rules with their audiences. ``apps`` may be a
    migration's historical state, in which a table added by a later migration does not
    exist yet; it is left out there."""
    party = apps.get_model("delegation_idp", "Party")
    rule = apps.get_model("delegation_idp", "DelegationRule")
    more = []
    for name in MODELS:
        try:
            more.append(apps.get_model("delegation_idp", name)._meta.db_table)
        except LookupError:
            continue
    links = []
    for model, name in LINK_FIELDS:
        try:
            field = apps.get_model("delegation_idp", model)._meta.get_field(name)
        except (FieldDoesNotExist, LookupError):
            continue
        links.append(field.remote_field.through._meta.db_table)
    return [party._meta.db_table, rule._meta.db_table, *more, *links]


def _name(table: str, event: str = "") -> str:
    """A trigger name within PostgreSQL's 63-byte limit."""
    short = table.removeprefix("delegation_idp_")
    return f"{PREFIX}{short}" + (f"_{event}" if event else "")


def _version_table(apps: Any, quote: Any) -> str:
    return str(quote(apps.get_model("delegation_idp", "PolicyVersion")._meta.db_table))


def install_statements(connection: Any, apps: Any) -> list[str]:
    """The SQL that creates (or replaces) the triggers; none on other databases."""
    if connection.vendor not in VENDORS:
        return []
    quote = connection.ops.quote_name
    version = _version_table(apps, quote)
    if connection.vendor == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "  # noqa: S608
            f'BEGIN UPDATE {version} SET "version" = gen_random_uuid()::text WHERE "id" = 1; '
            "RETURN NULL; END $$",
            # BEFORE the statement: the version row is locked before the statement locks
            # any policy row, so two policy writers always lock in the same order.
            *(
                f"CREATE OR REPLACE TRIGGER {_name(table)} "
                f"BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {quote(table)} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
                for table in tables(apps)
            ),
        ]
    return [
        f"CREATE TRIGGER IF NOT EXISTS {_name(table, event)} AFTER {event.upper()} ON {quote(table)} "  # noqa: S608
        f'BEGIN UPDATE {version} SET "version" = lower(hex(randomblob(16))) WHERE "id" = 1; END'
        for table in tables(apps)
        for event in SQLITE_EVENTS
    ]


def uninstall_statements(connection: Any, apps: Any) -> list[str]:
    """The SQL that drops the triggers (and, on PostgreSQL, their function)."""
    if connection.vendor not in VENDORS:
        return []
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        return [
            *(f"DROP TRIGGER IF EXISTS {_name(table)} ON {quote(table)}" for table in tables(apps)),
            f"DROP FUNCTION IF EXISTS {FUNCTION}()",
        ]
    return [
        f"DROP TRIGGER IF EXISTS {_name(table, event)}" for table in tables(apps) for event in SQLITE_EVENTS
    ]


def install(schema_editor: Any, apps: Any) -> None:
    """Create (or replace) the triggers, from a migration; a no-op on other databases."""
    for sql in install_statements(schema_editor.connection, apps):
        schema_editor.execute(sql)


def uninstall(schema_editor: Any, apps: Any) -> None:
    for sql in uninstall_statements(schema_editor.connection, apps):
        schema_editor.execute(sql)


def installed(connection: Any) -> bool:
    """Every trigger is present on its table and enabled (on PostgreSQL: fires in the
    normal replication role, ``O`` or ``A``) on this connection's database."""
    if connection.vendor not in VENDORS:
        return False
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            expected = {(_name(table), table) for table in tables(app_registry)}
            cursor.execute(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE t.tgname LIKE %s AND NOT t.tgisinternal AND t.tgenabled IN ('O', 'A') "
                "AND pg_catalog.pg_table_is_visible(c.oid)",
                [PREFIX + "%"],
            )
        else:
            expected = {
                (_name(table, event), table) for table in tables(app_registry) for event in SQLITE_EVENTS
            }
            cursor.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [PREFIX + "%"],
            )
        present = {(row[0], row[1]) for row in cursor.fetchall()}
    return expected <= present
