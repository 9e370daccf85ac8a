from __future__ import annotations

import importlib
import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django_fsm import ConcurrentTransition, ConcurrentTransitionMixin, TransitionNotAllowed
from djmoney.money import Money

from api.services import IssuedKey
from payments.locks import order_lock
from payments.models import OrderStatus, OrderTransition, PaymentEvent, PaymentOrder, Payout, Refund
from tests.conftest import unique
from wallets.services import sellers_ensure

pytestmark = pytest.mark.django_db

ALLOWED_EDGES = importlib.import_module("payments.migrations.0005_refunds_payouts_disputes").ALLOWED_EDGES

ACTOR = "test"
TRANSITIONS = [
    "start_execution",
    "mark_unknown",
    "mark_pending",
    "mark_success",
    "mark_failed",
    "refund_partially",
    "refund_fully",
    "refund_revert_to_success",
    "refund_revert_to_partial",
]
# The shortest legal path from NOT_STARTED to each state, so a test reaches a state only through transitions.
PATH_TO = {
    OrderStatus.NOT_STARTED: [],
    OrderStatus.EXECUTING: ["start_execution"],
    OrderStatus.UNKNOWN: ["start_execution", "mark_unknown"],
    OrderStatus.PENDING: ["start_execution", "mark_pending"],
    OrderStatus.SUCCESS: ["start_execution", "mark_success"],
    OrderStatus.FAILED: ["start_execution", "mark_failed"],
    OrderStatus.PARTIALLY_REFUNDED: ["start_execution", "mark_success", "refund_partially"],
    OrderStatus.REFUNDED: ["start_execution", "mark_success", "refund_fully"],
}


def _order(issued_key: IssuedKey) -> PaymentOrder:
    event = PaymentEvent.objects.create(client=issued_key.client, checkout_id="chk", buyer_id="b")
    sellers_ensure(accounts=["seller_7"])
    return PaymentOrder.objects.create(
        event=event,
        position=0,
        payment_order_id=unique("po"),
        seller_id="seller_7",
        amount=Money(Decimal("10.00"), "EUR"),
    )


def _walk(order: PaymentOrder, status: str) -> PaymentOrder:
    for name in PATH_TO[status]:
        getattr(order, name)(actor=ACTOR, reason=f"to reach {status}")
        order.save()
    return order


def _model_edges() -> set[tuple[str, str]]:
    return {
        (t.source, t.target)
        for t in PaymentOrder().get_all_status_transitions()  # type: ignore[attr-defined]
        if t.source != t.target
    }


def test_the_database_guard_knows_the_same_edges_as_the_model() -> None:
    assert set(ALLOWED_EDGES) == _model_edges()


def _illegal_moves() -> list[tuple[str, str]]:
    legal = {(t.source, t.name) for t in PaymentOrder().get_all_status_transitions()}  # type: ignore[attr-defined]
    return [move for move in itertools.product(OrderStatus.values, TRANSITIONS) if move not in legal]


@pytest.mark.parametrize(("status", "name"), _illegal_moves())
def test_every_illegal_transition_raises_and_writes_nothing(issued_key: IssuedKey, status: str, name: str) -> None:
    # given an order brought to `status` through legal transitions
    order = _walk(_order(issued_key), status)
    logged = OrderTransition.objects.filter(order=order).count()

    # when an illegal transition is attempted
    with pytest.raises(TransitionNotAllowed):
        getattr(order, name)(actor=ACTOR, reason="illegal")
    order.save()

    # then nothing changed, in memory or in the database
    assert order.status == status
    order.refresh_from_db()
    assert order.status == status
    assert OrderTransition.objects.filter(order=order).count() == logged


@pytest.mark.parametrize("status", list(PATH_TO))
def test_every_legal_path_is_logged_step_by_step(issued_key: IssuedKey, status: str) -> None:
    order = _walk(_order(issued_key), status)

    order.refresh_from_db()
    log = list(
        OrderTransition.objects.filter(order=order)
        .order_by("pk")
        .values_list("transition", "from_status", "to_status", "actor")
    )

    assert order.status == status
    assert [entry[0] for entry in log] == PATH_TO[status]
    assert all(entry[3] == ACTOR for entry in log)
    statuses = [OrderStatus.NOT_STARTED] + [entry[2] for entry in log]
    assert [entry[1] for entry in log] == statuses[:-1]
    assert statuses[-1] == status


def test_failure_keeps_its_code_and_reason(issued_key: IssuedKey) -> None:
    order = _walk(_order(issued_key), OrderStatus.EXECUTING)
    order.mark_failed(actor=ACTOR, reason="Your card was declined.", failure_code="card_declined")
    order.save()
    order.refresh_from_db()
    assert (order.status, order.failure_code, order.failure_reason) == (
        OrderStatus.FAILED,
        "card_declined",
        "Your card was declined.",
    )
    assert OrderTransition.objects.get(order=order, to_status=OrderStatus.FAILED).reason == "Your card was declined."


def test_status_cannot_be_assigned(issued_key: IssuedKey) -> None:
    order = _order(issued_key)
    with pytest.raises(AttributeError):
        order.status = OrderStatus.SUCCESS  # type: ignore[assignment]


def test_two_copies_of_one_order_cannot_both_leave_the_same_state(issued_key: IssuedKey) -> None:
    # given two workers that loaded the same NOT_STARTED order
    order = _order(issued_key)
    first, second = PaymentOrder.objects.get(pk=order.pk), PaymentOrder.objects.get(pk=order.pk)
    first.start_execution(actor="worker-1")
    first.save()

    # when the second, unaware, makes the same move
    second.start_execution(actor="worker-2")
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        second.save()

    # then only the first one's move is recorded
    assert list(OrderTransition.objects.filter(order=order).values_list("actor", flat=True)) == ["worker-1"]


def _raw_update(order: PaymentOrder, target: str, *, logged: bool) -> None:
    """Move ``order`` with raw SQL, as code that bypasses the model would; with or without a log row first."""
    with transaction.atomic(), connection.cursor() as cursor:
        if logged:
            cursor.execute(
                "INSERT INTO payments_ordertransition (order_id, from_status, to_status, transition, reason, actor)"
                " VALUES (%s, %s, %s, 'raw', '', 'test')",
                [order.pk, order.status, target],
            )
        cursor.execute("UPDATE payments_paymentorder SET status = %s WHERE id = %s", [target, order.pk])


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(OrderStatus.values, 2)))
def test_the_database_refuses_a_raw_update_off_the_state_machine(
    issued_key: IssuedKey, source: str, target: str
) -> None:
    # given an order brought to `source` through legal transitions
    order = _walk(_order(issued_key), source)

    # when raw SQL moves it to `target`, logging the move as the model would, then
    # PostgreSQL allows exactly the state machine's edges
    if (source, target) in ALLOWED_EDGES:
        _raw_update(order, target, logged=True)
    else:
        with pytest.raises(IntegrityError, match="not a transition of the order state machine"):
            _raw_update(order, target, logged=True)


def test_the_database_refuses_a_status_change_without_its_log_row(issued_key: IssuedKey) -> None:
    order = _order(issued_key)

    with pytest.raises(IntegrityError, match="has no transition log row"):
        _raw_update(order, OrderStatus.EXECUTING, logged=False)
    with pytest.raises(IntegrityError, match="has no transition log row"), transaction.atomic():
        PaymentOrder.objects.filter(pk=order.pk).update(status=OrderStatus.EXECUTING)

    order.refresh_from_db()
    assert order.status == OrderStatus.NOT_STARTED


def test_the_database_refuses_an_order_born_in_another_state(issued_key: IssuedKey) -> None:
    event = PaymentEvent.objects.create(client=issued_key.client, checkout_id="chk", buyer_id="b")
    sellers_ensure(accounts=["seller_7"])
    order = PaymentOrder(
        event=event, position=0, payment_order_id=unique("po"), seller_id="seller_7", amount=Money(Decimal(1), "EUR")
    )
    order.__dict__["status"] = OrderStatus.SUCCESS  # what a careless bulk load would do

    with pytest.raises(IntegrityError, match="starts NOT_STARTED"), transaction.atomic():
        PaymentOrder.objects.bulk_create([order])


def test_a_refused_concurrent_save_leaves_the_transaction_usable(issued_key: IssuedKey) -> None:
    # given a worker whose copy of the order went stale
    order = _order(issued_key)
    stale = PaymentOrder.objects.get(pk=order.pk)
    order.start_execution(actor="worker-1")
    order.save()

    # when its save is refused inside a bigger transaction
    with transaction.atomic():
        stale.start_execution(actor="worker-2")
        with pytest.raises(ConcurrentTransition):
            stale.save()
        # then that transaction can still record what happened and carry on
        stale.refresh_from_db()
        stale.mark_success(actor="worker-2", reason="the PSP said so")
        stale.save()

    assert list(OrderTransition.objects.filter(order=order).order_by("pk").values_list("actor", "to_status")) == [
        ("worker-1", OrderStatus.EXECUTING),
        ("worker-2", OrderStatus.SUCCESS),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payments_ordertransition SET reason = 'rewritten'",
        "DELETE FROM payments_ordertransition",
    ],
)
def test_the_transition_log_is_append_only(issued_key: IssuedKey, statement: str) -> None:
    _walk(_order(issued_key), OrderStatus.SUCCESS)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert OrderTransition.objects.filter(reason="rewritten").count() == 0
    assert OrderTransition.objects.count() == 2


def test_an_order_locked_is_the_order_the_orm_loads_with_its_payment_and_moves_the_same(
    issued_key: IssuedKey, django_assert_num_queries: Any
) -> None:
    # given an order that has started executing
    order = _walk(_order(issued_key), OrderStatus.EXECUTING)
    loaded = PaymentOrder.objects.select_related("event").get(pk=order.pk)

    with transaction.atomic():
        # when it is locked
        locked = order_lock(payment_order_id=order.payment_order_id)

        # then every field is what the ORM reads, the payment comes with it, and the row is held
        assert {f.attname: getattr(locked, f.attname) for f in PaymentOrder._meta.concrete_fields} == {
            f.attname: getattr(loaded, f.attname) for f in PaymentOrder._meta.concrete_fields
        }
        assert locked.amount == Money(Decimal("10.00"), "EUR")
        with django_assert_num_queries(0):
            assert locked.event.checkout_id == "chk"
            assert locked.event.pk == loaded.event.pk
        assert locked.row_locked is True

        # and its transition saves from the status it was read in
        locked.mark_success(actor=ACTOR, reason="locked")
        locked.save()
    assert PaymentOrder.objects.get(pk=order.pk).status == OrderStatus.SUCCESS
    assert list(order.transitions.order_by("pk").values_list("to_status", flat=True)) == ["EXECUTING", "SUCCESS"]


def test_locking_an_order_that_does_not_exist_raises_does_not_exist() -> None:
    with pytest.raises(PaymentOrder.DoesNotExist), transaction.atomic():
        order_lock(payment_order_id="po_nobody")


@pytest.mark.parametrize("model", [PaymentOrder, Refund, Payout])
def test_each_state_machine_finds_its_state_fields_as_django_fsm_does(model: type[Any]) -> None:
    # Found once per class (payments.models.fsm) instead of for every instance: the same fields.
    instance = model()

    assert list(instance.state_fields) == list(ConcurrentTransitionMixin.state_fields.fget(instance))
    assert [field.name for field in instance.state_fields] == ["status"]
