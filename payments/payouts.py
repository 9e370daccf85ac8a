"""Payouts (DESIGN.md "Pay-out"): a seller's available balance in one currency, reserved at creation and sent to
their payout account through the PSP's transfers, with the payout id as idempotency key.

Never paid twice: a payout is created under the wallet's row lock, reserving the whole available balance in the
same transaction, and PostgreSQL allows one open payout per wallet (payout_one_open_per_wallet). A second run at
the same moment waits for the lock and then finds nothing left to pay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger.money import to_minor
from payments.errors import NothingToPayOut, PayoutAccountMissing
from payments.models import OPEN_PAYOUT_STATUSES, Payout, PayoutStatus
from payments.psp import payment_gateway
from payments.psp.gateway import TransferResult, TransferStatus, UnknownPspOutcome
from payments.services import tasks_enqueue
from wallets.fx import fx_convert
from wallets.models import Seller, Wallet
from wallets.payouts import payout_failed_post, payout_paid_post, payout_reserve_post, payout_send_post

logger = logging.getLogger(__name__)

PAYOUT_EXECUTOR = "payout-executor"
SCHEDULE_ACTOR = "payout-run"


def payout_minimum(currency: str) -> int:
    """The smallest payout, in minor units of ``currency`` (PAYOUT_MINIMUM_BY_CURRENCY, else PAYOUT_MINIMUM)."""
    major = settings.PAYOUT_MINIMUM_BY_CURRENCY.get(currency, settings.PAYOUT_MINIMUM)
    return to_minor(major, currency)


def payout_create(*, seller_account: str, currency: str, actor: str) -> Payout:
    """One payout of the seller's whole available balance in ``currency``. Raises NothingToPayOut (below the
    minimum, a debt, or a payout of this wallet still open) and PayoutAccountMissing."""
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().filter(seller_id=seller_account, currency=currency).first()
        if wallet is None or wallet.available < max(payout_minimum(currency), 1):
            available = wallet.available if wallet is not None else 0
            raise NothingToPayOut(
                f"{seller_account} has {available} minor units of {currency} available; the minimum is "
                f"{payout_minimum(currency)}."
            )
        seller = Seller.objects.get(account=seller_account)
        if not seller.payout_account:
            raise PayoutAccountMissing()
        payout_currency = seller.payout_currency or currency
        conversion = fx_convert(amount=wallet.available, source=currency, target=payout_currency)
        try:
            with transaction.atomic():
                payout = Payout.objects.create(
                    seller_id=seller_account,
                    currency=currency,
                    amount=wallet.available,
                    payout_currency=payout_currency,
                    payout_amount=conversion.target_amount,
                    fx_rate=conversion.rate if payout_currency != currency else None,
                    destination=seller.payout_account,
                    actor=actor,
                )
        except IntegrityError as exc:
            if "payout_one_open_per_wallet" not in str(exc):
                raise
            raise NothingToPayOut(f"A payout of {seller_account}'s {currency} balance is still in progress.") from exc
        payout_reserve_post(
            payout_id=payout.payout_id,
            seller_account=seller_account,
            currency=currency,
            amount=payout.amount,
            actor=actor,
        )
        payouts_enqueue([payout.payout_id])
    return payout


def seller_payouts_create(*, seller_account: str, actor: str, currency: str | None = None) -> list[Payout]:
    """A payout for each of the seller's wallets (or the one in ``currency``) with enough available. Raises
    NothingToPayOut when none has, and PayoutAccountMissing when the seller cannot be paid at all."""
    currencies = [currency] if currency else _wallet_currencies(seller_account)
    created, refusals = [], []
    for code in currencies:
        try:
            created.append(payout_create(seller_account=seller_account, currency=code, actor=actor))
        except NothingToPayOut as exc:
            refusals.append(exc.message)
    if not created:
        raise NothingToPayOut(" ".join(refusals) or None)
    return created


def _wallet_currencies(seller_account: str) -> list[str]:
    return list(Wallet.objects.filter(seller_id=seller_account).order_by("currency").values_list("currency", flat=True))


@dataclass
class PayoutRunReport:
    created: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # "seller currency" → why


def payout_run(*, actor: str = SCHEDULE_ACTOR) -> PayoutRunReport:
    """Every wallet whose available balance reaches its currency's minimum gets one payout. Safe to run twice at
    once: each wallet is paid by whichever run takes its lock first."""
    report = PayoutRunReport()
    candidates = Wallet.objects.filter(available__gt=0).order_by("seller_id", "currency")
    for seller_account, currency, available in candidates.values_list("seller_id", "currency", "available"):
        if available < payout_minimum(currency):
            continue
        try:
            report.created.append(
                payout_create(seller_account=str(seller_account), currency=currency, actor=actor).payout_id
            )
        except (NothingToPayOut, PayoutAccountMissing) as exc:
            report.skipped[f"{seller_account} {currency}"] = exc.code
    logger.info("payout run: %d payouts, %d wallets skipped", len(report.created), len(report.skipped))
    return report


def payout_execute(*, payout_id: str) -> Payout:
    """Send the payout's transfer once; safe to call any number of times, concurrently or after a crash. Raises
    TransientPspError and UnknownPspOutcome for the task to retry (the payout is then EXECUTING or UNKNOWN)."""
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(payout_id=payout_id)
        sent_before = payout.status in (PayoutStatus.EXECUTING, PayoutStatus.UNKNOWN)
        if payout.status == PayoutStatus.NOT_STARTED:
            if not payout.destination:
                payout.mark_failed(failure_code="payout_account_missing", reason="the seller has no payout account")
                payout.save()
                payout_failed_post(payout_id=payout_id, actor=PAYOUT_EXECUTOR)
                return payout
            payout.start_execution()
            payout_send_post(
                payout_id=payout_id,
                seller_account=payout.seller_id,
                currency=payout.currency,
                amount=payout.amount,
                payout_currency=payout.payout_currency,
                payout_amount=payout.payout_amount,
                actor=PAYOUT_EXECUTOR,
            )
        elif not sent_before:
            return payout
        payout.attempts += 1
        payout.save()
    gateway = payment_gateway()
    if sent_before:
        found = gateway.transfer_lookup(payout_id=payout_id)
        if found is not None:
            return payout_apply_result(payout_id=payout_id, result=found, actor=PAYOUT_EXECUTOR)
    try:
        result = gateway.transfer(
            payout_id=payout_id,
            destination=payout.destination,
            amount=payout.payout_amount,
            currency=payout.payout_currency,
            description=f"payout {payout_id} to {payout.seller_id}",
        )
    except UnknownPspOutcome:
        with transaction.atomic():
            locked = Payout.objects.select_for_update().get(payout_id=payout_id)
            if locked.status == PayoutStatus.EXECUTING:
                locked.mark_unknown()
                locked.save()
        raise
    return payout_apply_result(payout_id=payout_id, result=result, actor=PAYOUT_EXECUTOR)


def payout_apply_result(*, payout_id: str, result: TransferResult, actor: str) -> Payout:
    """PAID posts the payment from payout clearing; FAILED books the reservation back. Changes nothing for a payout
    already final, so the executor and lookups may both apply the same answer."""
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(payout_id=payout_id)
        if payout.status not in OPEN_PAYOUT_STATUSES or payout.status == PayoutStatus.NOT_STARTED:
            return payout
        if result.status is TransferStatus.PAID:
            payout.psp_reference = result.psp_reference
            payout.paid_at = timezone.now()
            payout.mark_paid()
            payout.save()
            payout_paid_post(
                payout_id=payout_id,
                payout_currency=payout.payout_currency,
                payout_amount=payout.payout_amount,
                actor=actor,
            )
        else:
            payout.psp_reference = result.psp_reference or payout.psp_reference
            payout.mark_failed(failure_code=result.failure_code or "transfer_failed", reason=result.failure_message)
            payout.save()
            payout_failed_post(payout_id=payout_id, actor=actor)
            logger.warning("payout failed; its funds are available again", extra={"payout_id": payout_id})
    return payout


def payouts_enqueue(payout_ids: list[str]) -> None:
    tasks_enqueue("payments.payout_execute", payout_ids)
