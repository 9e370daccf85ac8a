"""The executor: sends one payment order to the PSP and records what came back (DESIGN.md "Pay-in", step 2).

Three transactions, never one around the PSP call: a database transaction held open across an HTTP call holds row
locks and a connection for as long as the PSP takes, and a crash in the middle would roll back the only record that
the charge was attempted.

1. Lock the order, run the risk check, ``NOT_STARTED → EXECUTING``, commit. From here the recovery sweep can see an
   order that was sent (or about to be) and never answered.
2. The PSP call, with ``payment_order_id`` as its idempotency key: running this twice (a redelivered task, a retry,
   the sweep) charges at most once.
3. Lock the order again and apply the result through ``order_apply_result``, which also applies webhooks and
   lookups: whichever of them arrives first moves the order, the others find it moved and change nothing.
"""

from __future__ import annotations

import logging
from typing import cast

from django.db import transaction
from django_fsm import can_proceed
from djmoney.money import Money

from ledger.money import to_minor
from ops import context
from payments.locks import order_lock, orders_lock
from payments.models import OrderStatus, PaymentOrder, RiskReview, RiskReviewStatus
from payments.psp import payment_gateway
from payments.psp.gateway import ChargeResult, ChargeStatus, UnknownPspOutcome
from payments.risk import Verdict, order_risk_check, risk_rejection_record
from payments.risk.reviews import risk_review_hold
from payments.services import order_capture, orders_capture

logger = logging.getLogger(__name__)

EXECUTOR = "executor"

# The states in which (re)sending the charge is the right move. EXECUTING: a previous run died or timed out after
# step 1; UNKNOWN: the request left and no answer came. Such an order is first looked up at the PSP: the same
# idempotency key protects a resend only while the PSP remembers it (24 hours at Stripe), and a PSP may store a 500
# under the key and answer every retry with it; the lookup settles both.
_SENDABLE = (OrderStatus.EXECUTING, OrderStatus.UNKNOWN)


def order_execute(*, payment_order_id: str) -> PaymentOrder:
    """Run the order at the PSP once; safe to call any number of times, concurrently or after a crash.

    Raises TransientPspError (the caller retries with backoff; the order stays EXECUTING) and UnknownPspOutcome
    (the order is now UNKNOWN; the caller retries with the same key, or the sweep looks it up).
    """
    order, payment_method, sent_before = _execution_start(payment_order_id)
    if order.status not in _SENDABLE:
        return order
    # Every line from here on, the PSP call's among them, names the payment as well as the order.
    with context.bound(payment_id=order.event.payment_id, payment_order_id=payment_order_id):
        return _execution_send(order, payment_method, sent_before)


def orders_apply_captures(*, psp_references: dict[str, str], actor: str, reason: str) -> dict[str, str]:
    """``order_apply_result`` with a capture, for many orders at once (the lost webhooks a settlement file brings
    back, in their thousands): the same rules per order, in one transaction of a few statements instead of a dozen
    round trips per order. ``psp_references``: order id → the charge's reference. Returns each order's status
    before (equal to its status now when nothing changed)."""
    with transaction.atomic():
        orders = orders_lock(payment_order_ids=sorted(psp_references))
        before = {order.payment_order_id: order.status for order in orders}
        for order in orders:
            if order.status == OrderStatus.FAILED:
                logger.error(
                    "PSP reports a capture for a failed order",
                    extra={
                        "payment_order_id": order.payment_order_id,
                        "psp_reference": psp_references[order.payment_order_id],
                    },
                )
        capturable = [order for order in orders if can_proceed(order.mark_success)]
        orders_capture(orders=capturable, psp_references=psp_references, actor=actor, reason=reason)
    return before


def _execution_send(order: PaymentOrder, payment_method: str, sent_before: bool) -> PaymentOrder:
    payment_order_id = order.payment_order_id
    if sent_before:
        found = payment_gateway().lookup(payment_order_id=payment_order_id)
        if found is not None:
            order, _ = order_apply_result(
                payment_order_id=payment_order_id, result=found, actor=EXECUTOR, reason="found at the PSP"
            )
            if order.status not in _SENDABLE:
                return order
    money = cast(Money, order.amount)
    currency = money.currency.code
    try:
        result = payment_gateway().charge(
            payment_order_id=payment_order_id,
            amount=to_minor(money.amount, currency),
            currency=currency,
            payment_method=payment_method,
            description=f"{order.event.payment_id} / {payment_order_id}",
        )
    except UnknownPspOutcome as exc:
        order_mark_unknown(payment_order_id=payment_order_id, reason=str(exc)[:500])
        raise
    order, _ = order_apply_result(payment_order_id=payment_order_id, result=result, actor=EXECUTOR)
    return order


def _execution_start(payment_order_id: str) -> tuple[PaymentOrder, str, bool]:
    """Lock the order and make it ready to send: (order, payment method, whether it was sent before)."""
    with transaction.atomic():
        order = order_lock(payment_order_id=payment_order_id)
        payment_method = order.event.payment_method_token
        if not payment_method:
            # A hosted-page order: the buyer pays on the PSP's page and the webhook moves it; nothing to send.
            return order, payment_method, False
        sent_before = order.status in _SENDABLE
        if order.status == OrderStatus.NOT_STARTED:
            review = RiskReview.objects.filter(order=order).values_list("status", flat=True).first()
            if review == RiskReviewStatus.PENDING:
                return order, payment_method, False  # held until a person decides (payments/risk/reviews.py)
            if review != RiskReviewStatus.APPROVED:  # a person's approval stands in for the check
                decision = order_risk_check(order)
                if decision.verdict is Verdict.REJECT:
                    order.mark_failed(actor="risk", reason=decision.rule, failure_code="risk_rejected")
                    order.save()
                    risk_rejection_record(order, decision.rule, actor="risk")
                    return order, payment_method, False
                if decision.verdict is Verdict.REVIEW:
                    risk_review_hold(order=order, rule=decision.rule)
                    return order, payment_method, False  # stays NOT_STARTED until a person decides
            order.start_execution(actor=EXECUTOR)
        elif not sent_before:
            return order, payment_method, False
        order.attempts += 1
        order.save()
    return order, payment_method, sent_before


def order_mark_unknown(*, payment_order_id: str, reason: str) -> PaymentOrder:
    with transaction.atomic():
        order = order_lock(payment_order_id=payment_order_id)
        if order.status == OrderStatus.EXECUTING:
            order.mark_unknown(actor=EXECUTOR, reason=reason)
            order.save()
    return order


def order_apply_result(
    *, payment_order_id: str, result: ChargeResult, actor: str, reason: str = ""
) -> tuple[PaymentOrder, str]:
    """Move the order to what the PSP says, if its state machine still allows it; otherwise change nothing.
    Returns the order and the status it had before (equal to its status now when nothing changed).

    The executor, webhooks and lookups all come through here, in any order and any number of times. A result that
    arrives late (a ``processing`` event after the success) finds the order past it and is dropped. A capture
    reported for an order we hold FAILED is money taken with no sale: it is logged at ERROR and left, unchanged, to
    reconciliation and a person.
    """
    with transaction.atomic():
        order = order_lock(payment_order_id=payment_order_id)
        before = order.status
        if result.status is ChargeStatus.SUCCEEDED:
            if order.status == OrderStatus.FAILED:
                logger.error(
                    "PSP reports a capture for a failed order",
                    extra={"payment_order_id": payment_order_id, "psp_reference": result.psp_reference},
                )
            elif can_proceed(order.mark_success):  # not NOT_STARTED (never sent), not captured already
                order_capture(order=order, psp_reference=result.psp_reference, actor=actor, reason=reason)
        elif result.status is ChargeStatus.PENDING and can_proceed(order.mark_pending):
            order.psp_reference = result.psp_reference or order.psp_reference
            order.action_url = result.action_url
            order.mark_pending(actor=actor, reason=reason or "the PSP is still working")
            order.save()
        elif (
            result.status is ChargeStatus.FAILED
            and order.status != OrderStatus.NOT_STARTED
            and can_proceed(order.mark_failed)
        ):
            order.psp_reference = result.psp_reference or order.psp_reference
            order.mark_failed(actor=actor, reason=reason or result.failure_message, failure_code=result.failure_code)
            order.save()
    return order, before
