"""Balance transactions: every movement of the sandbox account's balance, the rows the settlement report lists.

One availability rule for all of them (charges, refunds, disputes, transfers): funds move into (or out of) the
available balance two days after the movement, at the start of a UTC day. Stripe's standard schedule is counted in
whole days too; one rule keeps the daily settlement report (by ``available_on``) simple to reconcile.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from psp_sandbox.inserts import insert
from psp_sandbox.models import BalanceTransaction, stripe_id

AVAILABILITY_DELAY_DAYS = 2


def available_on(now: datetime) -> datetime:
    day = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
    return day + timedelta(days=AVAILABILITY_DELAY_DAYS)


def balance_transaction_create(
    *,
    type: str,
    reporting_category: str,
    amount: int,
    currency: str,
    source: str,
    now: datetime,
    fee: int = 0,
    description: str = "",
) -> BalanceTransaction:
    """Book ``amount`` (negative for money going out) less ``fee``; ``net`` is their difference, always."""
    return insert(
        BalanceTransaction(
            id=stripe_id("txn"),
            type=type,
            reporting_category=reporting_category,
            amount=amount,
            fee=fee,
            net=amount - fee,
            currency=currency,
            available_on=available_on(now),
            source=source,
            description=description,
            created=now,
        )
    )
