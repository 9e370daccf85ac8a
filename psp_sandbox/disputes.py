"""Disputes (chargebacks), opened and closed by control calls, since at Stripe the cardholder's bank opens them.

Opening one withdraws the disputed amount and a dispute fee (15 major units of the charge's currency, Stripe's
USD/EUR fee) from the balance: an ``adjustment`` balance transaction, category ``dispute``; events
``charge.dispute.created`` and ``charge.dispute.funds_withdrawn``. Closing it ``won`` gives both back (category
``dispute_reversal``, event ``charge.dispute.funds_reinstated``); ``lost`` keeps them; either way
``charge.dispute.closed``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from psp_sandbox import events, objects
from psp_sandbox import params as p
from psp_sandbox.balance import balance_transaction_create
from psp_sandbox.errors import InvalidRequest, ResourceMissing
from psp_sandbox.models import Charge, Dispute, stripe_id
from psp_sandbox.money import exponent

REASONS = {"fraudulent", "product_not_received", "duplicate", "subscription_canceled", "general"}
FEE_MAJOR_UNITS = 15


def dispute_fee(currency: str) -> int:
    return FEE_MAJOR_UNITS * 10 ** exponent(currency)


def dispute_open_input(params: dict[str, Any]) -> tuple[int | None, str]:
    p.reject_unknown(params, {"amount", "reason"})
    amount = p.int_param(params, "amount")
    reason = p.str_param(params, "reason") or "fraudulent"
    if reason not in REASONS:
        raise InvalidRequest(f"Invalid reason: one of {', '.join(sorted(REASONS))}.", param="reason")
    return amount, reason


def dispute_open(*, charge_id: str, amount: int | None, reason: str) -> Dispute:
    now = timezone.now()
    with transaction.atomic():
        charge = Charge.objects.select_for_update().filter(pk=charge_id).first()
        if charge is None:
            raise ResourceMissing("charge", charge_id, param="charge")
        if charge.status != Charge.Status.SUCCEEDED or charge.disputed:
            raise InvalidRequest(f"Charge {charge.id} cannot be disputed (succeeded and not yet disputed only).")
        disputable = charge.amount - charge.amount_refunded
        amount = disputable if amount is None else amount
        if not 1 <= amount <= disputable:
            raise InvalidRequest(f"Invalid amount: between 1 and {disputable}.", param="amount")
        dispute_id = stripe_id("dp")
        dispute = Dispute.objects.create(
            id=dispute_id,
            charge=charge,
            amount=amount,
            currency=charge.currency,
            reason=reason,
            withdrawal=balance_transaction_create(
                type="adjustment",
                reporting_category="dispute",
                amount=-amount,
                fee=dispute_fee(charge.currency),
                currency=charge.currency,
                source=dispute_id,
                description=f"Chargeback withdrawal for {charge.id}",
                now=now,
            ),
            created=now,
        )
        charge.disputed = True
        charge.save(update_fields=["disputed"])
        rendered = objects.dispute_object(dispute)
        events.event_emit("charge.dispute.created", rendered)
        events.event_emit("charge.dispute.funds_withdrawn", rendered)
        return dispute


def dispute_close(*, dispute_id: str, won: bool) -> Dispute:
    now = timezone.now()
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().filter(pk=dispute_id).select_related("withdrawal").first()
        if dispute is None:
            raise ResourceMissing("dispute", dispute_id, param="dispute")
        if dispute.status != Dispute.Status.NEEDS_RESPONSE:
            raise InvalidRequest(f"Dispute {dispute.id} is already closed ({dispute.status}).")
        dispute.status = Dispute.Status.WON if won else Dispute.Status.LOST
        if won:
            dispute.reinstatement = balance_transaction_create(
                type="adjustment",
                reporting_category="dispute_reversal",
                amount=dispute.amount,
                fee=-dispute.withdrawal.fee,
                currency=dispute.currency,
                source=dispute.id,
                description=f"Chargeback reversal for {dispute.charge_id}",
                now=now,
            )
        dispute.save(update_fields=["status", "reinstatement"])
        rendered = objects.dispute_object(dispute)
        events.event_emit("charge.dispute.closed", rendered)
        if won:
            events.event_emit("charge.dispute.funds_reinstated", rendered)
        return dispute
