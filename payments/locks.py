"""Row locks on payment orders, always taken in primary-key order so that two callers never deadlock, and the
helpers of the hot paths' locking statements written once (``row_columns``, ``row_instance``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection, models, transaction
from psycopg import sql

from payments.models import PaymentEvent, PaymentOrder

M = TypeVar("M", bound=models.Model)


def order_lock(*, payment_order_id: str) -> PaymentOrder:
    """Lock one order for the rest of the transaction; a concurrent transition waits instead of racing. The order
    comes with its payment loaded (``order.event``), as ``select_related`` would. Raises PaymentOrder.DoesNotExist.

    Every execution takes this lock twice and every webhook once, so it is one statement written once, not a
    queryset compiled each time: building ``select_for_update().select_related().get()`` cost four times the
    statement's own round trip in the worker's CPU. The instances are made as the ORM makes them (``from_db``,
    every column in field order), so their saves and transitions behave the same.
    """
    with connection.cursor() as cursor:
        cursor.execute(_lock_statement(), [payment_order_id])
        row = cursor.fetchone()
    if row is None:
        raise PaymentOrder.DoesNotExist(f"PaymentOrder matching payment_order_id={payment_order_id!r} does not exist")
    split = len(PaymentOrder._meta.concrete_fields)
    order, event = row_instance(PaymentOrder, row[:split]), row_instance(PaymentEvent, row[split:])
    PaymentOrder._meta.get_field("event").set_cached_value(order, event)
    order.row_locked = True
    # The lock ends with the transaction; a save of this instance after it must take the careful path again.
    transaction.on_commit(lambda: setattr(order, "row_locked", False))
    return order


def row_columns(model: type[models.Model], table: str) -> sql.Composed:
    """Every column of ``model``, in field order, qualified by ``table``: what ``row_instance`` makes an instance of."""
    return sql.SQL(", ").join(sql.Identifier(table, _column(field)) for field in model._meta.concrete_fields)


def row_instance(model: type[M], row: Sequence[Any]) -> M:
    """An instance of ``model`` from the values of ``row_columns``, made as the ORM makes the ones it loads."""
    return model.from_db(connection.alias, [field.attname for field in model._meta.concrete_fields], row)


def _column(field: object) -> str:
    column = getattr(field, "column", None)
    assert isinstance(column, str), f"{field} has no column"
    return column


@functools.cache
def _lock_statement() -> sql.Composed:
    # FOR UPDATE OF the order's row only. Locking its payment too would queue every order of a multi-seller payment
    # behind each other.
    order, event = PaymentOrder._meta, PaymentEvent._meta
    return sql.SQL(
        "SELECT {columns} FROM {orders} o JOIN {events} e ON e.{event_pk} = o.{event_fk}"
        " WHERE o.{order_id} = %s FOR UPDATE OF o"
    ).format(
        columns=sql.SQL(", ").join([row_columns(PaymentOrder, "o"), row_columns(PaymentEvent, "e")]),
        orders=sql.Identifier(order.db_table),
        events=sql.Identifier(event.db_table),
        event_pk=sql.Identifier(_column(event.pk)),
        event_fk=sql.Identifier(_column(order.get_field("event"))),
        order_id=sql.Identifier(_column(order.get_field("payment_order_id"))),
    )


def orders_lock(*, payment_order_ids: list[str]) -> list[PaymentOrder]:
    """Lock many orders for the rest of the transaction, in primary-key order (two batches naming the same orders
    cannot deadlock, nor a batch and a single order); those that exist, in that order."""
    orders = list(
        PaymentOrder.objects.select_for_update(of=("self",))
        .select_related("event")
        .filter(payment_order_id__in=payment_order_ids)
        .order_by("pk")
    )
    for order in orders:
        order.row_locked = True
        transaction.on_commit(lambda order=order: setattr(order, "row_locked", False))  # type: ignore[misc]
    return orders
