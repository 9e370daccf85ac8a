"""Refunds: ``POST /v1/refunds`` and the asynchronous failure of a refund of a ``pm_card_refundFail`` charge.

A refund is booked at once: a ``refund`` balance transaction for minus its amount, the charge's ``amount_refunded``
up by it, events ``refund.created`` and ``charge.refunded``. Of a ``pm_card_refundFail`` charge it starts
``succeeded`` and, ``processing_delay_seconds`` later, the clock fails it (``refund_fail``): a ``refund_failure``
balance transaction gives the money back, the charge's ``amount_refunded`` goes down again, events ``refund.updated``
and ``refund.failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from psp_sandbox import config, events, objects
from psp_sandbox import params as p
from psp_sandbox.balance import balance_transaction_create
from psp_sandbox.cards import card_for
from psp_sandbox.errors import InvalidRequest, ResourceMissing
from psp_sandbox.models import Charge, PaymentIntent, Refund, stripe_id
from psp_sandbox.money import display

REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


@dataclass(frozen=True)
class RefundInput:
    charge: str | None
    payment_intent: str | None
    amount: int | None
    reason: str
    metadata: dict[str, str]
    expand: list[str]


def refund_create_input(params: dict[str, Any]) -> RefundInput:
    p.reject_unknown(
        params, {"charge", "payment_intent", "amount", "reason", "metadata", "expand", "instructions_email"}
    )
    charge = p.str_param(params, "charge", max_length=255)
    intent = p.str_param(params, "payment_intent", max_length=255)
    if charge is None and intent is None:
        raise InvalidRequest(
            "One of the following params should be provided for this request: payment_intent or charge."
        )
    if charge is not None and intent is not None:
        raise InvalidRequest("You can only specify one of these parameters: charge, payment_intent.", param="charge")
    amount = p.int_param(params, "amount")
    if amount is not None and amount < 1:
        raise InvalidRequest("Invalid positive integer", code="parameter_invalid_integer", param="amount")
    reason = p.str_param(params, "reason") or ""
    if reason and reason not in REASONS:
        raise InvalidRequest(f"Invalid reason: must be one of {', '.join(sorted(REASONS))}", param="reason")
    return RefundInput(
        charge=charge,
        payment_intent=intent,
        amount=amount,
        reason=reason,
        metadata=p.metadata_param(params),
        expand=p.list_param(params, "expand") or [],
    )


def refund_create(*, data: RefundInput) -> Refund:
    now = timezone.now()
    with transaction.atomic():
        charge = _refundable_charge(data)
        refundable = charge.amount - charge.amount_refunded
        if refundable == 0:
            raise InvalidRequest(
                f"Charge {charge.id} has already been refunded.", code="charge_already_refunded", param="charge"
            )
        amount = data.amount if data.amount is not None else refundable
        if amount > refundable:
            raise InvalidRequest(
                f"Refund amount ({display(amount, charge.currency)}) is greater than unrefunded amount on charge "
                f"({display(refundable, charge.currency)})",
                code="amount_too_large",
                param="amount",
            )
        refund = Refund(
            id=stripe_id("re"),
            charge=charge,
            payment_intent_id=charge.payment_intent_id,
            amount=amount,
            currency=charge.currency,
            status=Refund.Status.SUCCEEDED,
            reason=data.reason,
            metadata=data.metadata,
            created=now,
        )
        card = card_for(charge.payment_method)
        if card is not None and card.refund_fails:
            refund.fails_at = now + timedelta(seconds=config.current().processing_delay_seconds)
        refund.balance_transaction = balance_transaction_create(
            type="refund",
            reporting_category="refund",
            amount=-amount,
            currency=charge.currency,
            source=refund.id,
            description=f"REFUND FOR CHARGE ({charge.payment_intent.description or charge.id})",
            now=now,
        )
        refund.save(force_insert=True)
        charge.amount_refunded += amount
        charge.save(update_fields=["amount_refunded"])
        events.event_emit("refund.created", objects.refund_object(refund))
        events.event_emit("charge.refunded", objects.charge_object(charge))
        return refund


def _refundable_charge(data: RefundInput) -> Charge:
    if data.charge is not None:
        charge = Charge.objects.select_for_update().filter(pk=data.charge).select_related("payment_intent").first()
        if charge is None:
            raise ResourceMissing("charge", data.charge, param="charge", status=400)
    else:
        assert data.payment_intent is not None
        if not PaymentIntent.objects.filter(pk=data.payment_intent).exists():
            raise ResourceMissing("payment_intent", data.payment_intent, param="payment_intent", status=400)
        charge = (
            Charge.objects.select_for_update()
            .filter(payment_intent_id=data.payment_intent, status=Charge.Status.SUCCEEDED)
            .select_related("payment_intent")
            .first()
        )
        if charge is None:
            raise InvalidRequest(
                f"This PaymentIntent ({data.payment_intent}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
    if charge.status != Charge.Status.SUCCEEDED:
        raise InvalidRequest(
            f"Charge {charge.id} has not succeeded and cannot be refunded.", code="charge_not_refundable"
        )
    if charge.disputed:
        raise InvalidRequest(
            f"Charge {charge.id} has been charged back; refunding it would pay the money out twice.",
            code="charge_disputed",
            param="charge",
        )
    return charge


def refund_fail(*, refund_id: str) -> Refund | None:
    """The clock's part: fail a refund whose time has come. A no-op (None) unless it is still succeeded and due."""
    now = timezone.now()
    with transaction.atomic():
        refund = Refund.objects.select_for_update().filter(pk=refund_id).select_related("charge").first()
        if (
            refund is None
            or refund.status != Refund.Status.SUCCEEDED
            or refund.fails_at is None
            or refund.fails_at > now
        ):
            return None
        charge = Charge.objects.select_for_update().get(pk=refund.charge_id)
        refund.status = Refund.Status.FAILED
        refund.failure_reason = "expired_or_canceled_card"
        refund.failure_balance_transaction = balance_transaction_create(
            type="payment_failure_refund",
            reporting_category="refund_failure",
            amount=refund.amount,
            currency=refund.currency,
            source=refund.id,
            description=f"REFUND FAILURE ({refund.id})",
            now=now,
        )
        refund.save(update_fields=["status", "failure_reason", "failure_balance_transaction"])
        charge.amount_refunded -= refund.amount
        charge.save(update_fields=["amount_refunded"])
        rendered = objects.refund_object(refund)
        events.event_emit("refund.updated", rendered, previous_attributes={"status": "succeeded"})
        events.event_emit("refund.failed", rendered)
        return refund


def refunds_fail_due(*, limit: int = 200) -> None:
    due = Refund.objects.filter(status=Refund.Status.SUCCEEDED, fails_at__lte=timezone.now())
    for refund_id in due.values_list("id", flat=True)[:limit]:
        refund_fail(refund_id=refund_id)
