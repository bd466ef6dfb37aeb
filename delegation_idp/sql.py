"""Statements the token endpoint runs on every request, built once per model from its metadata.

Compiling an ORM query costs more than running it on the token endpoint's hot path
(the client's row with its party, one lineage row, one audit row), so these three
statements are written out once, in standard SQL, from the models' own fields and
columns, and values are converted by the fields themselves (``get_db_prep_save``),
exactly as the ORM would. The vendor-specific statements of issuance (row locks in
sub-selects) live in :mod:`delegation_idp.lineage.issuance`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from django.db import connections
from django.db.models import Field, Model


def _field(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


__all__ = ["convert", "insert", "readers", "select_with_reverse_one_to_one"]


@functools.lru_cache(maxsize=32)
def _insert_sql(model: type[Model], vendor: str, alias: str) -> tuple[str, tuple[Field, ...]]:
    quote = connections[alias].ops.quote_name
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key or not f.auto_created)
    fields = tuple(f for f in fields if f is not model._meta.auto_field)
    columns = ", ".join(quote(str(f.column)) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})", fields  # noqa: S608


def insert(model: type[Model], values: Mapping[str, Any], using: str) -> None:
    """``INSERT`` one row of ``model``: ``values`` by attribute name (``user_id`` for a foreign
    key), every other field its default. No signals, no ``save()``: for append-only rows
    whose model defines no behaviour on save beyond that."""
    connection = connections[using]
    sql, fields = _insert_sql(model, connection.vendor, using)
    params = [
        f.get_db_prep_save(values[f.attname] if f.attname in values else f.get_default(), connection)
        for f in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.lru_cache(maxsize=8)
def _select_sql(model: type[Model], related: type[Model], link: str, column: str, alias: str) -> str:
    quote = connections[alias].ops.quote_name
    meta, rmeta = model._meta, related._meta
    columns = [f"m.{quote(str(f.column))}" for f in meta.concrete_fields]
    columns += [f"r.{quote(str(f.column))}" for f in rmeta.concrete_fields]
    on = f"r.{quote(str(_field(related, link).column))} = m.{quote(str(meta.pk.column))}"
    return (
        f"SELECT {', '.join(columns)} FROM {quote(meta.db_table)} m "  # noqa: S608 - identifiers from model metadata
        f"LEFT JOIN {quote(rmeta.db_table)} r ON {on} "
        f"WHERE m.{quote(str(_field(model, column).column))} = %s"
    )


def readers(model: type[Model], alias: str) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    """The attribute names of ``model``'s concrete fields, and for each its column expression
    with the converters that turn a database value into the field's Python value. Kept on
    the connection object (one per thread), whose methods the converters are."""
    connection = connections[alias]
    cache = connection.__dict__.setdefault("_delegation_idp_readers", {})
    if model not in cache:
        cache[model] = _build_readers(model, connection)
    return cache[model]  # type: ignore[no-any-return]


def _build_readers(model: type[Model], connection: Any) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    names, readers = [], []
    for field in model._meta.concrete_fields:
        expression = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        names.append(field.attname)
        readers.append((expression, converters))
    return names, readers


def convert(connection: Any, readers: list[tuple[Any, list[Any]]], values: Any) -> list[Any]:
    """A row's database values as the fields' Python values (``readers`` from :func:`readers`)."""
    out = []
    for (expression, converters), value in zip(readers, values, strict=True):
        for converter in converters:
            value = converter(value, expression, connection)
        out.append(value)
    return out


def select_with_reverse_one_to_one(
    model: type[Model], column: str, value: Any, related: type[Model], link: str, using: str
) -> Model | None:
    """The ``model`` row whose ``column`` is ``value``, with the ``related`` row whose one-to-one
    field ``link`` points at it (or none) cached on it: what
    ``model.objects.select_related(<reverse accessor>).get(column=value)`` returns, in one
    statement compiled once."""
    connection = connections[using]
    sql = _select_sql(model, related, link, column, using)
    with connection.cursor() as cursor:
        cursor.execute(sql, [_field(model, column).get_db_prep_value(value, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    own, own_readers = readers(model, using)
    theirs, their_readers = readers(related, using)
    instance = model.from_db(using, own, convert(connection, own_readers, row[: len(own)]))
    link_field = related._meta.get_field(link)
    values = row[len(own) :]
    if values[theirs.index(related._meta.pk.attname)] is None:
        instance._state.fields_cache[link_field.remote_field.cache_name] = None  # type: ignore[union-attr]
    else:
        other = related.from_db(using, theirs, convert(connection, their_readers, values))
        other._state.fields_cache[link_field.cache_name] = instance  # type: ignore[union-attr]
        instance._state.fields_cache[link_field.remote_field.cache_name] = other  # type: ignore[union-attr]
    return instance
