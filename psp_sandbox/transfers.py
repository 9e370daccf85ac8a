"""Transfers to connected accounts (``POST /v1/transfers``) and their reversals.

Test destinations: any ``acct_`` id is a connected account, except ``acct_invalid`` (and any id starting with it),
which does not exist (400 ``resource_missing`` on ``destination``, as Stripe answers for an unknown account), and
``acct_insufficient_funds``, for which the platform's balance is short (400 ``balance_insufficient``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from psp_sandbox import events, objects
from psp_sandbox import params as p
from psp_sandbox.balance import balance_transaction_create
from psp_sandbox.errors import InvalidRequest, ResourceMissing
from psp_sandbox.inputs import CURRENCIES, MAX_AMOUNT
from psp_sandbox.models import Transfer, TransferReversal, stripe_id

UNKNOWN_ACCOUNT_PREFIX = "acct_invalid"
SHORT_OF_FUNDS_ACCOUNT = "acct_insufficient_funds"


@dataclass(frozen=True)
class TransferInput:
    amount: int
    currency: str
    destination: str
    description: str
    metadata: dict[str, str]
    transfer_group: str
    expand: list[str]


def transfer_create_input(params: dict[str, Any]) -> TransferInput:
    p.reject_unknown(
        params, {"amount", "currency", "destination", "description", "metadata", "transfer_group", "expand"}
    )
    amount = p.int_param(params, "amount", required=True)
    assert amount is not None
    if not 1 <= amount <= MAX_AMOUNT:
        raise InvalidRequest("Invalid positive integer", code="parameter_invalid_integer", param="amount")
    currency = (p.str_param(params, "currency", required=True, max_length=3) or "").lower()
    if currency not in CURRENCIES:
        raise InvalidRequest(f"Invalid currency: {currency}.", param="currency")
    destination = p.str_param(params, "destination", required=True, max_length=255) or ""
    return TransferInput(
        amount=amount,
        currency=currency,
        destination=destination,
        description=p.str_param(params, "description", max_length=1000) or "",
        metadata=p.metadata_param(params),
        transfer_group=p.str_param(params, "transfer_group", max_length=255) or "",
        expand=p.list_param(params, "expand") or [],
    )


def transfer_create(*, data: TransferInput) -> Transfer:
    if not re.fullmatch(r"acct_[A-Za-z0-9_]+", data.destination) or data.destination.startswith(UNKNOWN_ACCOUNT_PREFIX):
        raise InvalidRequest(f"No such destination: '{data.destination}'", code="resource_missing", param="destination")
    if data.destination == SHORT_OF_FUNDS_ACCOUNT:
        raise InvalidRequest(
            "You have insufficient available funds in your Stripe account. Try adding funds directly to your "
            "available balance by creating Charges using the 4000000000000077 test card.",
            code="balance_insufficient",
        )
    now = timezone.now()
    with transaction.atomic():
        transfer_id = stripe_id("tr")
        transfer = Transfer.objects.create(
            id=transfer_id,
            amount=data.amount,
            currency=data.currency,
            destination=data.destination,
            destination_payment=stripe_id("py"),
            description=data.description,
            metadata=data.metadata,
            transfer_group=data.transfer_group,
            balance_transaction=balance_transaction_create(
                type="transfer",
                reporting_category="transfer",
                amount=-data.amount,
                currency=data.currency,
                source=transfer_id,
                description=data.description,
                now=now,
            ),
            created=now,
        )
        events.event_emit("transfer.created", objects.transfer_object(transfer))
        return transfer


def transfer_reverse(*, transfer_id: str, amount: int | None, metadata: dict[str, str]) -> TransferReversal:
    """POST /v1/transfers/{id}/reversals: all that is left of the transfer unless ``amount`` says less."""
    now = timezone.now()
    with transaction.atomic():
        transfer = Transfer.objects.select_for_update().filter(pk=transfer_id).first()
        if transfer is None:
            raise ResourceMissing("transfer", transfer_id, param="id")
        left = transfer.amount - transfer.amount_reversed
        amount = left if amount is None else amount
        if left == 0 or amount > left:
            raise InvalidRequest(
                f"You cannot reverse more than the {left} left of transfer {transfer.id}.", param="amount"
            )
        reversal_id = stripe_id("trr")
        reversal = TransferReversal.objects.create(
            id=reversal_id,
            transfer=transfer,
            amount=amount,
            currency=transfer.currency,
            metadata=metadata,
            balance_transaction=balance_transaction_create(
                type="transfer_refund",
                reporting_category="transfer_reversal",
                amount=amount,
                currency=transfer.currency,
                source=reversal_id,
                description=f"REVERSAL OF {transfer.id}",
                now=now,
            ),
            created=now,
        )
        transfer.amount_reversed += amount
        transfer.save(update_fields=["amount_reversed"])
        events.event_emit("transfer.reversed", objects.transfer_object(transfer))
        return reversal


def reversal_input(params: dict[str, Any]) -> tuple[int | None, dict[str, str]]:
    p.reject_unknown(params, {"amount", "metadata", "description", "expand", "refund_application_fee"})
    amount = p.int_param(params, "amount")
    if amount is not None and amount < 1:
        raise InvalidRequest("Invalid positive integer", code="parameter_invalid_integer", param="amount")
    return amount, p.metadata_param(params)
