"""The indexes every issuance writes (docs/performance.md, "Measured": migration 0014).

Each index of the lineage and audit tables costs a page on every token issued, so each is
declared for the look-ups it serves: no LIKE-only twin beside an exact-match index on
PostgreSQL, and the columns that are NULL on nearly every row indexed only where they are set.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.db import connection

from delegation_idp.models import AuditEvent, TokenLineage

pytestmark = pytest.mark.django_db


def indexed_columns(model: Any) -> Counter[tuple[str, ...]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return Counter(
        tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"] or c["primary_key"]
    )


def test_the_lineage_table_has_one_index_per_look_up() -> None:
    assert indexed_columns(TokenLineage) == Counter(
        {
            ("id",): 1,
            ("jti",): 1,
            ("root_jti",): 1,
            ("path",): 1,
            ("client_id",): 1,
            ("kid",): 1,
            ("expires_at",): 1,
            ("user_id",): 1,
            ("access_token_id",): 1,
            ("revoked_at",): 1,
            ("code_hash",): 1,
            ("approval_id",): 1,
            ("status_list_id", "status_idx"): 1,
        }
    )


def test_the_audit_table_has_one_index_per_look_up() -> None:
    assert indexed_columns(AuditEvent) == Counter(
        {("id",): 1, ("created",): 1, ("client_id",): 1, ("user_id",): 1, ("subject",): 1, ("jti",): 1}
    )


def test_columns_null_on_nearly_every_row_have_partial_indexes() -> None:
    partial = {index.name for index in TokenLineage._meta.indexes if index.condition is not None}
    assert partial == {
        "delegation_idp_lineage_revk",
        "delegation_idp_lineage_code",
        "delegation_idp_lineage_appr",
    }
    catalogue = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql LIKE %s",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(catalogue, [TokenLineage._meta.db_table, "% WHERE %"])
        assert {row[0] for row in cursor.fetchall()} >= partial
