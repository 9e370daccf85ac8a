"""One-row INSERTs for the sandbox's hot path: a confirmed PaymentIntent writes six rows (intent, balance
transaction, charge, event, webhook delivery, idempotency key) in the request's transaction.

``insert(obj)`` writes the row ``obj.save(force_insert=True)`` would write, field by field through the fields' own
preparation (``pre_save``: ``auto_now`` and ``auto_now_add``; ``get_db_prep_save``: JSON, time zones), and sets the
auto-incremented id it returns. Only the statement's text is built once per model instead of by the ORM's compiler on
every call, which costs more CPU than the round trip itself. No signals are sent: the sandbox's models have no
receivers.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)

_lock = threading.Lock()
_statements: dict[type[models.Model], tuple[list[Any], str, Any]] = {}


def insert(obj: M) -> M:
    """INSERT ``obj`` as a new row (as ``Model.save(force_insert=True)``); returns it, saved."""
    fields, sql, auto = _statement(type(obj))
    if auto is not None and getattr(obj, auto.attname) is not None:
        obj.save(force_insert=True)  # an explicit value for the auto id: the ORM's own path
        return obj
    values = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if auto is not None:
            row = cursor.fetchone()
            assert row is not None
            setattr(obj, auto.attname, row[0])
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def _statement(model: type[models.Model]) -> tuple[list[Any], str, Any]:
    cached = _statements.get(model)
    if cached is not None:
        return cached
    meta = model._meta
    auto = meta.auto_field
    fields = [field for field in meta.local_concrete_fields if field is not auto]
    quote = connection.ops.quote_name
    # Only the model's own table and column names are formatted in; the values are parameters.
    columns = ", ".join(quote(str(field.column)) for field in fields)
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608
    if auto is not None:
        sql += f" RETURNING {quote(str(auto.column))}"
    with _lock:
        cached = _statements.setdefault(model, (fields, sql, auto))
    return cached
