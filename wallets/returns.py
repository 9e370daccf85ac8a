"""Money going back to buyers, in the ledger: refunds and disputes (DESIGN.md "Ledger": "Refund and dispute reverse
with new entries"). The payments app decides the amounts and where they come from; this module books them.

Each posting is idempotent per its reference, and each balances in its one currency. Where a seller's part comes
from depends on the order: its pending funds while the order is not released, its available funds after (which may
go below zero: the seller then owes it, and the next releases net it off).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from ledger.models import AccountType, Side
from ledger.services import AccountRef, Line, Posting, journal_post
from wallets.models import Bucket
from wallets.services import (
    platform_fees_account,
    post_guarded,
    psp_clearing_account,
    psp_fees_account,
    suspense_account,
    wallet_account,
    wallet_ensure,
)

REFUND_KIND = "refund"
REFUND_FAILED_KIND = "refund_failed"
DISPUTE_WITHDRAWN_KIND = "dispute_withdrawn"
DISPUTE_HOLD_KIND = "dispute_hold"
DISPUTE_REINSTATED_KIND = "dispute_reinstated"
DISPUTE_RELEASE_KIND = "dispute_release"
DISPUTE_LOST_KIND = "dispute_lost"


@dataclass(frozen=True)
class SellerPart:
    """A seller's share of money going back: how much of it is (or goes back to) pending, and how much available."""

    seller_account: str
    pending: int
    available: int

    @property
    def total(self) -> int:
        return self.pending + self.available


def dispute_clearing_account(currency: str) -> AccountRef:
    """Money the PSP withdrew for an open dispute: given back if it is won, lost if not."""
    return AccountRef(f"dispute_clearing:{currency}", AccountType.ASSET, currency)


def _seller_lines(part: SellerPart, currency: str, side: Side) -> list[Line]:
    lines = []
    if part.pending:
        lines.append(Line(wallet_account(part.seller_account, currency, Bucket.PENDING), side, part.pending))
    if part.available:
        lines.append(Line(wallet_account(part.seller_account, currency, Bucket.AVAILABLE), side, part.available))
    return lines


def refund_post(
    *, refund_id: str, currency: str, amount: int, seller: SellerPart, fee_part: int, actor: str
) -> Posting:
    """A refund sent: PSP clearing pays ``amount`` back; the seller's part and the platform's fee part fund it."""
    lines = [Line(psp_clearing_account(currency), Side.CREDIT, amount), *_seller_lines(seller, currency, Side.DEBIT)]
    if fee_part:
        lines.append(Line(platform_fees_account(currency), Side.DEBIT, fee_part))
    with transaction.atomic(savepoint=False):
        wallet_ensure(seller_account=seller.seller_account, currency=currency)
        return post_guarded(
            kind=REFUND_KIND, reference=refund_id, lines=lines, actor=actor, seller_account=seller.seller_account
        )


def refund_failed_post(
    *, refund_id: str, currency: str, amount: int, seller: SellerPart, fee_part: int, actor: str
) -> Posting:
    """A refund the PSP refused or failed: the money stayed with us; the parts go back to where they belong now."""
    lines = [Line(psp_clearing_account(currency), Side.DEBIT, amount), *_seller_lines(seller, currency, Side.CREDIT)]
    if fee_part:
        lines.append(Line(platform_fees_account(currency), Side.CREDIT, fee_part))
    return journal_post(kind=REFUND_FAILED_KIND, reference=refund_id, lines=lines, actor=actor)


def dispute_withdrawn_post(*, dispute_id: str, currency: str, amount: int, fee: int, actor: str) -> Posting:
    """The PSP withdrew the disputed amount and its dispute fee from our balance, until the dispute is decided."""
    total = amount + fee
    lines = [
        Line(dispute_clearing_account(currency), Side.DEBIT, total),
        Line(psp_clearing_account(currency), Side.CREDIT, total),
    ]
    return journal_post(kind=DISPUTE_WITHDRAWN_KIND, reference=dispute_id, lines=lines, actor=actor)


def dispute_hold_post(*, reference: str, currency: str, seller: SellerPart, actor: str) -> Posting | None:
    """Hold the seller's part of a disputed order: it can be neither released nor paid out until the dispute ends."""
    if not seller.total:
        return None
    lines = [
        *_seller_lines(seller, currency, Side.DEBIT),
        Line(wallet_account(seller.seller_account, currency, Bucket.HELD), Side.CREDIT, seller.total),
    ]
    with transaction.atomic(savepoint=False):
        wallet_ensure(seller_account=seller.seller_account, currency=currency)
        return post_guarded(
            kind=DISPUTE_HOLD_KIND, reference=reference, lines=lines, actor=actor, seller_account=seller.seller_account
        )


def dispute_won_post(
    *, dispute_id: str, currency: str, amount: int, fee: int, releases: list[tuple[str, SellerPart]], actor: str
) -> None:
    """Won: the PSP gives the amount and fee back, and each held part goes back to the seller's funds."""
    total = amount + fee
    journal_post(
        kind=DISPUTE_REINSTATED_KIND,
        reference=dispute_id,
        lines=[
            Line(psp_clearing_account(currency), Side.DEBIT, total),
            Line(dispute_clearing_account(currency), Side.CREDIT, total),
        ],
        actor=actor,
    )
    for reference, part in releases:
        if not part.total:
            continue
        lines = [
            Line(wallet_account(part.seller_account, currency, Bucket.HELD), Side.DEBIT, part.total),
            *_seller_lines(part, currency, Side.CREDIT),
        ]
        journal_post(kind=DISPUTE_RELEASE_KIND, reference=reference, lines=lines, actor=actor)


def dispute_lost_post(
    *, dispute_id: str, currency: str, amount: int, fee: int, held: list[tuple[str, int]], fee_part: int, actor: str
) -> Posting:
    """Lost: the withdrawn amount is gone. The sellers' held parts and the platform's fee part pay for the amount;
    the PSP's dispute fee is the platform's expense. Whatever no order explains (``amount`` more than the parts)
    goes to suspense, for a person."""
    lines = [Line(dispute_clearing_account(currency), Side.CREDIT, amount + fee)]
    for seller_account, part in held:
        if part:
            lines.append(Line(wallet_account(seller_account, currency, Bucket.HELD), Side.DEBIT, part))
    if fee_part:
        lines.append(Line(platform_fees_account(currency), Side.DEBIT, fee_part))
    if fee:
        lines.append(Line(psp_fees_account(currency), Side.DEBIT, fee))
    unexplained = amount - fee_part - sum(part for _, part in held)
    if unexplained:
        lines.append(Line(suspense_account(currency), Side.DEBIT, unexplained))
    return journal_post(kind=DISPUTE_LOST_KIND, reference=dispute_id, lines=lines, actor=actor)
