"""Payouts in the ledger (DESIGN.md "Pay-out"): available → reserved when a payout is created, reserved → payout
clearing when it is sent, payout clearing → the account it is paid from when the provider confirms it; a failure
books both first steps back. All idempotent per payout id.

Stripe pays a transfer out of the platform's balance at Stripe, so the paying account is PSP clearing (what the PSP
owes us), not the bank: that keeps PSP clearing equal to what the PSP still holds for us, which reconciliation checks.
A payout in another currency crosses through the FX accounts, so each currency still balances on its own.
"""

from __future__ import annotations

from django.db import transaction

from ledger.models import AccountType, JournalTransaction, Side
from ledger.services import AccountRef, Line, Posting, journal_post, journal_reverse
from wallets.models import Bucket
from wallets.services import post_guarded, psp_clearing_account, wallet_account, wallet_ensure

PAYOUT_RESERVE_KIND = "payout_reserve"
PAYOUT_SEND_KIND = "payout_send"
PAYOUT_PAID_KIND = "payout_paid"


def payout_clearing_account(currency: str) -> AccountRef:
    """Payouts sent and not yet confirmed by the provider: owed to sellers, on the way."""
    return AccountRef(f"payout_clearing:{currency}", AccountType.LIABILITY, currency)


def fx_account(currency: str) -> AccountRef:
    """The platform's position in one currency from conversions: one leg in each currency of every conversion."""
    return AccountRef(f"fx_conversion:{currency}", AccountType.EQUITY, currency)


def payout_reserve_post(*, payout_id: str, seller_account: str, currency: str, amount: int, actor: str) -> Posting:
    """Reserve the payout's funds. Raises InsufficientFunds when the seller's available balance does not cover it."""
    lines = [
        Line(wallet_account(seller_account, currency, Bucket.AVAILABLE), Side.DEBIT, amount),
        Line(wallet_account(seller_account, currency, Bucket.RESERVED), Side.CREDIT, amount),
    ]
    with transaction.atomic(savepoint=False):
        wallet_ensure(seller_account=seller_account, currency=currency)
        return post_guarded(
            kind=PAYOUT_RESERVE_KIND, reference=payout_id, lines=lines, actor=actor, seller_account=seller_account
        )


def payout_send_post(
    *,
    payout_id: str,
    seller_account: str,
    currency: str,
    amount: int,
    payout_currency: str,
    payout_amount: int,
    actor: str,
) -> Posting:
    """The reserved funds leave the seller's wallet for payout clearing, converted when paid in another currency."""
    lines = [Line(wallet_account(seller_account, currency, Bucket.RESERVED), Side.DEBIT, amount)]
    if payout_currency == currency:
        lines.append(Line(payout_clearing_account(currency), Side.CREDIT, amount))
    else:
        lines += [
            Line(fx_account(currency), Side.CREDIT, amount),
            Line(fx_account(payout_currency), Side.DEBIT, payout_amount),
            Line(payout_clearing_account(payout_currency), Side.CREDIT, payout_amount),
        ]
    return journal_post(kind=PAYOUT_SEND_KIND, reference=payout_id, lines=lines, actor=actor)


def payout_paid_post(*, payout_id: str, payout_currency: str, payout_amount: int, actor: str) -> Posting:
    lines = [
        Line(payout_clearing_account(payout_currency), Side.DEBIT, payout_amount),
        Line(psp_clearing_account(payout_currency), Side.CREDIT, payout_amount),
    ]
    return journal_post(kind=PAYOUT_PAID_KIND, reference=payout_id, lines=lines, actor=actor)


def payout_failed_post(*, payout_id: str, actor: str) -> None:
    """Book back what the payout booked: the send (if it was sent), then the reservation. The funds are available
    again, in the wallet's currency, whatever the conversion was."""
    if JournalTransaction.objects.filter(kind=PAYOUT_SEND_KIND, reference=payout_id).exists():
        journal_reverse(kind=PAYOUT_SEND_KIND, reference=payout_id, actor=actor, memo=f"payout {payout_id} failed")
    if JournalTransaction.objects.filter(kind=PAYOUT_RESERVE_KIND, reference=payout_id).exists():
        journal_reverse(kind=PAYOUT_RESERVE_KIND, reference=payout_id, actor=actor, memo=f"payout {payout_id} failed")
