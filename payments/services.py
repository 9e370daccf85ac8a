from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from djmoney.money import Money

from api.idempotency import KEY_CONSTRAINT, KeyClaim
from api.models import ApiClient
from ledger.money import to_minor
from ops import context as log_context
from ops.db import PreparedStatement
from payments.errors import PaymentOrderIdTaken
from payments.ids import new_public_id
from payments.locks import order_lock
from payments.models import CAPTURED_STATUSES, OrderStatus, OrderTransition, PaymentEvent, PaymentOrder
from wallets.fees import platform_fee
from wallets.services import (
    SELLERS_REGISTER_SQL,
    PayinSpec,
    payin_post,
    payins_post,
    sellers_registered,
    sellers_unknown,
)

_M = TypeVar("_M", bound=models.Model)

# The NOTIFY channel on which payment_create announces the orders to execute (payments/relay.py listens).
EXECUTIONS_CHANNEL = "payment_orders_to_execute"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuyerInfo:
    id: str
    email: str = ""
    country: str = ""
    name: str = ""  # screened against the sanctions list by the risk check
    ip: str | None = None  # the buyer's address as the storefront saw it: the risk check's velocity per IP


@dataclass(frozen=True)
class NewOrder:
    payment_order_id: str
    seller_account: str
    amount: Decimal
    currency: str


# One statement writes the event and its orders. It is the API's hottest write, and as ORM calls it cost three
# statements and a savepoint, most of it in building the queries. ON CONFLICT lets PostgreSQL's unique index arbitrate
# between concurrent requests naming the same payment_order_id: the later one waits for the earlier to commit, then
# skips the row, and the missing row tells us which id was taken (the API's variant, below, fails instead). Columns not
# named take their database defaults (empty PSP fields), declared on the models with db_default. Rows go in by
# payment_order_id, not in request order: two requests naming the same ids in different orders would otherwise each hold
# a row the other waits for, and deadlock. Each order to execute is announced with NOTIFY, which PostgreSQL delivers
# only when the transaction commits: the execution relay (payments/relay.py) hears it and queues the executor, so the
# request itself never waits on, or fails with, the broker (the orders table is the outbox). The notification carries
# the request's id after a space (neither id can hold one), so the executor's log lines carry the id of the request that
# paid. Sellers named for the first time are registered by the same statement (wallets.services.SELLERS_REGISTER_SQL).
# Through the API, it also claims the request's Idempotency-Key and stores its answer (api.idempotency.KeyClaim): the
# lock comes first, and every write reads from it, so a held key writes nothing and waits for nothing. That variant is a
# transaction of its own, so a taken payment_order_id makes it fail instead of skipping the row. Each parameter is typed
# where it is first used: the statement is prepared (ops/db.py), and PREPARE fixes its types.
_INSERT_PAYMENT = """
WITH {claim}{sellers}, event AS (
    INSERT INTO payments_paymentevent
        (payment_id, client_id, checkout_id, buyer_id, buyer_email, buyer_country, buyer_name, buyer_ip,
         payment_method_token, created_at, updated_at)
    SELECT %(payment_id)s::varchar, %(client_id)s::bigint, %(checkout_id)s::varchar, %(buyer_id)s::varchar,
           %(buyer_email)s::varchar, %(buyer_country)s::varchar, %(buyer_name)s::varchar, %(buyer_ip)s::inet,
           %(payment_method_token)s::varchar, %(created_at)s::timestamptz, %(created_at)s::timestamptz
    {claimed}
    RETURNING id
), orders AS (
    INSERT INTO payments_paymentorder
        (payment_order_id, event_id, position, seller_account, amount, amount_currency, status, created_at,
         updated_at)
    SELECT o.payment_order_id, event.id, o.position - 1, o.seller_account, o.amount, o.currency,
           %(status)s::varchar, %(created_at)s::timestamptz, %(created_at)s::timestamptz
    FROM event, unnest(
        %(order_ids)s::varchar[], %(sellers)s::varchar[], %(amounts)s::numeric[], %(currencies)s::varchar[]
    )
        WITH ORDINALITY AS o(payment_order_id, seller_account, amount, currency, position)
    ORDER BY o.payment_order_id
    {on_conflict}
    RETURNING id, payment_order_id
){answer}
SELECT {held}, event.id, orders.id, orders.payment_order_id,
       CASE WHEN %(execute)s::boolean AND orders.id IS NOT NULL
           THEN pg_notify(%(channel)s::text, orders.payment_order_id || %(request_id)s::text)
       END,
       {answer_id}
FROM {source} LEFT JOIN orders ON true
"""
_INSERT_PAYMENT_UNCLAIMED = PreparedStatement(
    "payment_insert",
    _INSERT_PAYMENT.format(
        claim="",
        sellers=SELLERS_REGISTER_SQL.format(source="", guard=""),
        on_conflict="ON CONFLICT (payment_order_id) DO NOTHING",
        claimed="",
        answer="",
        held="true",
        answer_id="NULL::bigint",
        source="event",
    ),
)
_INSERT_PAYMENT_CLAIMED = PreparedStatement(
    "payment_insert_claimed",
    _INSERT_PAYMENT.format(
        claim=f"{KeyClaim.lock_sql()}, ",
        sellers=SELLERS_REGISTER_SQL.format(source="claim, ", guard=" WHERE claim.held"),
        on_conflict="",  # its own transaction: a taken id must make it fail (KeyClaim)
        claimed="FROM claim WHERE claim.held",
        answer=f", {KeyClaim.store_sql('event')}",
        held="claim.held",
        answer_id="(SELECT id FROM answer)",
        source="claim LEFT JOIN event ON true",
    ),
)


def payment_create(
    *,
    client: ApiClient,
    checkout_id: str,
    buyer: BuyerInfo,
    payment_method_token: str,
    orders: Sequence[NewOrder],
    claim: KeyClaim | None = None,
    answer: Callable[[PaymentEvent, list[PaymentOrder]], Any] | None = None,
    before_write: Callable[[], None] | None = None,
) -> PaymentEvent:
    """Store a payment and its orders, every order ``NOT_STARTED`` (DESIGN.md "Pay-in", step 1).

    Joins the caller's transaction when there is one. With a payment method, each order is announced to the
    execution relay, which queues its executor once that transaction commits. With ``claim``, the same statement
    claims the request's Idempotency-Key and stores ``answer`` (the response's data, given the payment as it will be
    stored) with the rows, and it commits by itself: ``before_write`` runs just before it, for the checks that must
    refuse the payment before anything is stored (the card-testing throttles).
    """
    event, stored_orders = _new_payment(
        client=client, checkout_id=checkout_id, buyer=buyer, payment_method_token=payment_method_token, orders=orders
    )
    new_sellers = sellers_unknown(order.seller_account for order in orders)
    params = {
        "new_sellers": new_sellers,
        "payment_id": event.payment_id,
        "client_id": client.pk,
        "checkout_id": checkout_id,
        "buyer_id": buyer.id,
        "buyer_email": buyer.email,
        "buyer_country": buyer.country,
        "buyer_name": buyer.name,
        "buyer_ip": buyer.ip,
        "payment_method_token": payment_method_token,
        "created_at": event.created_at,
        "status": OrderStatus.NOT_STARTED.value,
        "order_ids": [order.payment_order_id for order in orders],
        "sellers": [order.seller_account for order in orders],
        "amounts": [order.amount for order in orders],
        "currencies": [order.currency for order in orders],
        "execute": bool(payment_method_token),
        "channel": EXECUTIONS_CHANNEL,
        "request_id": _notified_request_id(),
    }
    if claim is None:
        with transaction.atomic(savepoint=False):
            rows = _INSERT_PAYMENT_UNCLAIMED.fetchall(params)
            inserted = {order_id: pk for _, _, pk, order_id, _, _ in rows if order_id is not None}
            if len(inserted) != len(orders):
                # Raising rolls the whole transaction back, the event row with it.
                raise _order_id_taken(client=client, orders=orders, free=inserted)
    else:
        if answer is None:
            raise ValueError("a claimed payment needs the answer to store")
        claim.answer(answer(event, stored_orders))
        params.update(claim.params())
        if before_write is not None:
            before_write()
        rows = _claimed_rows(params, claim=claim, client=client, orders=orders)
        inserted = {order_id: pk for _, _, pk, order_id, _, _ in rows}
    sellers_registered(new_sellers)  # once the caller's transaction commits, or now when the payment's own did
    # The first line of a payment's trail: its ids, with the request's (ops/logs.py adds that).
    logger.info(
        "payment %s created",
        event.payment_id,
        extra={"payment_id": event.payment_id, "payment_order_ids": [order.payment_order_id for order in orders]},
    )
    event.pk = rows[0][1]
    for stored in stored_orders:
        stored.pk = inserted[stored.payment_order_id]
        stored.event = event  # again, now that the event has its id
    return event


def _claimed_rows(
    params: dict[str, Any], *, claim: KeyClaim, client: ApiClient, orders: Sequence[NewOrder]
) -> list[tuple[Any, ...]]:
    """Run the claiming statement, which commits by itself, and settle the claim; raise whatever refuses it."""
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            # In a caller's transaction (a test's), a savepoint keeps that transaction usable when the statement fails.
            with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
                rows = _INSERT_PAYMENT_CLAIMED.fetchall(params)
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
            if constraint == _ORDER_ID_CONSTRAINT:
                raise _order_id_taken(client=client, orders=orders, free=_free_ids(orders)) from None
            if constraint == KEY_CONSTRAINT:
                claim.conflict()  # raises for a live answer; an expired one is deleted, and the payment goes in now
                continue
            raise
        claim.settle(held=rows[0][0], stored_id=rows[0][5])
        return rows
    claim.busy()  # the key's row kept changing under it: the client retries, as for a held key


# An expired key's row is replaced at the second attempt, unless others keep replacing it too.
_CLAIM_ATTEMPTS = 3


def _free_ids(orders: Sequence[NewOrder]) -> set[str]:
    """These orders' payment_order_ids that no stored order has."""
    ids = [order.payment_order_id for order in orders]
    return set(ids) - set(
        PaymentOrder.objects.filter(payment_order_id__in=ids).values_list("payment_order_id", flat=True)
    )


# The unique index a claiming payment's statement fails on when a payment_order_id is taken.
_ORDER_ID_CONSTRAINT = "payments_paymentorder_payment_order_id_key"


def _new_payment(
    *, client: ApiClient, checkout_id: str, buyer: BuyerInfo, payment_method_token: str, orders: Sequence[NewOrder]
) -> tuple[PaymentEvent, list[PaymentOrder]]:
    """The payment and its orders as the INSERT will store them, but for their ids (known once it ran)."""
    created_at = timezone.now()
    event = _as_stored(
        PaymentEvent,
        id=None,
        payment_id=new_public_id("pay"),
        client_id=client.pk,
        checkout_id=checkout_id,
        buyer_id=buyer.id,
        buyer_email=buyer.email,
        buyer_country=buyer.country,
        buyer_name=buyer.name,
        buyer_ip=buyer.ip,
        payment_method_token=payment_method_token,
        created_at=created_at,
        updated_at=created_at,
    )
    event.client = client
    stored_orders = []
    for position, order in enumerate(orders):
        stored = _as_stored(
            PaymentOrder,
            id=None,
            event_id=None,
            position=position,
            payment_order_id=order.payment_order_id,
            seller_id=order.seller_account,
            amount_currency=order.currency,
            amount=order.amount,
            status=OrderStatus.NOT_STARTED.value,
            created_at=created_at,
            updated_at=created_at,
        )
        stored.event = event
        stored_orders.append(stored)
    event._prefetched_objects_cache = {"orders": stored_orders}  # type: ignore[attr-defined]
    return event, stored_orders


def _notified_request_id() -> str:
    request_id = log_context.current().get("request_id")
    return f" {request_id}" if request_id else ""


def _as_stored(model: type[_M], **values: Any) -> _M:
    """The instance of ``model`` as the INSERT stores it: the values it writes, and the database's defaults for the
    columns it does not name. Built as a query's row is (``from_db``, values by position): building it
    from keyword arguments looked up every field by name and its default, and cost more than rendering the answer."""
    fields = model._meta.concrete_fields
    row = [values[field.attname] if field.attname in values else _stored_default(field) for field in fields]
    return model.from_db("default", [field.attname for field in fields], row)


def _stored_default(field: models.Field[Any, Any]) -> Any:
    # What PostgreSQL wrote for a column left out of the INSERT: its declared database default, or NULL.
    default = field.db_default
    if default is models.NOT_PROVIDED:
        return None
    if not isinstance(default, str | int | Decimal):
        raise ValueError(f"{field} has a computed database default; name its value in the INSERT")
    return default


def _order_id_taken(*, client: ApiClient, orders: Sequence[NewOrder], free: Container[str]) -> PaymentOrderIdTaken:
    """The refusal for the first of ``orders`` whose payment_order_id is not among the ``free`` ones."""
    index, taken_id = next(
        (index, order.payment_order_id) for index, order in enumerate(orders) if order.payment_order_id not in free
    )
    owner = PaymentOrder.objects.filter(payment_order_id=taken_id).values_list("event__payment_id", "event__client_id")
    payment_id, owner_client_id = owner.first() or (None, None)
    return PaymentOrderIdTaken(
        payment_order_id=taken_id,
        index=index,
        payment_id=payment_id if owner_client_id == client.pk else None,
    )


def order_succeed(*, payment_order_id: str, psp_reference: str, actor: str, reason: str = "") -> PaymentOrder:
    """The PSP captured the order's charge: SUCCESS, and its pay-in posting, in one transaction (DESIGN.md "Pay-in").

    Safe to run twice: an order already captured is returned as it is and nothing is posted again (the posting is
    also unique per payment_order_id in the ledger).
    """
    with transaction.atomic():
        order = order_lock(payment_order_id=payment_order_id)
        if order.status in CAPTURED_STATUSES:
            return order
        order_capture(order=order, psp_reference=psp_reference, actor=actor, reason=reason)
    return order


def order_capture(*, order: PaymentOrder, psp_reference: str, actor: str, reason: str = "") -> None:
    """SUCCESS and the pay-in posting, for an order whose row lock the caller holds in its open transaction."""
    money = cast(Money, order.amount)
    currency = money.currency.code
    gross = to_minor(money.amount, currency)
    order.psp_reference = psp_reference or order.psp_reference
    order.captured_at = timezone.now()
    order.platform_fee = platform_fee(gross, currency)
    order.mark_success(actor=actor, reason=reason)
    order.save()
    payin_post(
        seller_account=order.seller_id,
        currency=currency,
        gross=gross,
        reference=order.payment_order_id,
        actor=actor,
        fee=order.platform_fee,
    )


_ORDERS_CAPTURED = """
UPDATE payments_paymentorder o
SET status = u.status, psp_reference = u.psp_reference, captured_at = %(now)s, platform_fee = u.platform_fee,
    updated_at = %(now)s
FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(references)s::text[], %(fees)s::bigint[])
    AS u(id, status, psp_reference, platform_fee)
WHERE o.id = u.id
"""


def orders_capture(*, orders: Sequence[PaymentOrder], psp_references: dict[str, str], actor: str, reason: str) -> None:
    """``order_capture`` for many orders whose row locks the caller holds (payments.locks.orders_lock), each able to
    take SUCCESS: the same fields, transition and log row, and pay-in posting per order, written a statement for all
    of them (the log rows first, as PostgreSQL wants them before the status changes they explain)."""
    now = timezone.now()
    payins: dict[str, list[PayinSpec]] = {}
    for order in orders:
        money = cast(Money, order.amount)
        currency = money.currency.code
        gross = to_minor(money.amount, currency)
        order.psp_reference = psp_references.get(order.payment_order_id) or order.psp_reference
        order.captured_at = now
        order.platform_fee = platform_fee(gross, currency)
        order.updated_at = now
        order.mark_success(actor=actor, reason=reason)
        payins.setdefault(currency, []).append(
            PayinSpec(order.payment_order_id, order.seller_id, gross, order.platform_fee)
        )
    with transaction.atomic(savepoint=False):
        OrderTransition.objects.bulk_create(
            [log for order in orders for log in order.__dict__.pop("_pending_transitions", [])]
        )
        # One UPDATE from arrays: bulk_update's CASE per field and order cost more Python than the capture's
        # every other step together (half a second for the thousand lost webhooks of a bad night).
        with connection.cursor() as cursor:
            cursor.execute(
                _ORDERS_CAPTURED,
                {
                    "ids": [order.pk for order in orders],
                    "statuses": [order.status for order in orders],
                    "references": [order.psp_reference for order in orders],
                    "fees": [order.platform_fee for order in orders],
                    "now": now,
                },
            )
        for currency, batch in sorted(payins.items()):
            payins_post(payins=batch, currency=currency, actor=actor)


def executions_enqueue(payment_order_ids: Iterable[str]) -> None:
    """Queue the executor for these orders once the current transaction commits (at once outside one): the sweep's
    and a replay's way."""
    tasks_enqueue("payments.order_execute", list(payment_order_ids))


def tasks_enqueue(task_name: str, object_ids: list[str]) -> None:
    """Queue ``task_name`` for each id once the current transaction commits. A message that cannot be published
    (the broker is down) is logged and left: the object stays where it is and the recovery sweep sends it."""
    transaction.on_commit(lambda: _publish(task_name, object_ids))


def _publish(task_name: str, object_ids: list[str]) -> None:
    from payments import tasks

    task = tasks.BY_NAME[task_name]
    for object_id in object_ids:
        try:
            task.apply_async((object_id,), retry=False)
        except Exception:
            logger.warning(
                "could not queue %s; the recovery sweep will send it",
                task_name,
                extra={"task": task_name, "object_id": object_id},
                exc_info=True,
            )
