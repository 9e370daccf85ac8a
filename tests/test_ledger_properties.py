"""Random sequences of pay-ins, releases and reversals keep every invariant of the ledger and the wallets."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

import pytest
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError
from ledger.selectors import trial_balances
from ledger.services import journal_reverse
from wallets.errors import InsufficientFunds
from wallets.models import Wallet
from wallets.selectors import wallet_ledger_balances
from wallets.services import funds_release, payin_post

SELLERS = ["seller_a", "seller_b", "seller_c"]
CURRENCIES = ["EUR", "JPY", "KWD"]


@dataclass(frozen=True)
class Payin:
    seller: str
    currency: str
    gross: int


@dataclass(frozen=True)
class Release:
    seller: str
    currency: str
    amount: int


@dataclass(frozen=True)
class Reverse:
    index: int  # which earlier pay-in (modulo how many there are)


operations = st.lists(
    st.one_of(
        st.builds(Payin, st.sampled_from(SELLERS), st.sampled_from(CURRENCIES), st.integers(1, 10**9)),
        st.builds(Release, st.sampled_from(SELLERS), st.sampled_from(CURRENCIES), st.integers(1, 10**9)),
        st.builds(Reverse, st.integers(0, 1000)),
    ),
    min_size=1,
    max_size=25,
)


def _assert_invariants() -> None:
    for trial_balance in trial_balances():
        assert trial_balance.balanced, trial_balance.currency
    for wallet in Wallet.objects.all():
        from_ledger = wallet_ledger_balances(seller_account=wallet.seller_id, currency=wallet.currency)
        assert (wallet.pending, wallet.available, wallet.reserved, wallet.held) == (
            from_ledger.pending,
            from_ledger.available,
            from_ledger.reserved,
            from_ledger.held,
        )
        # No refund or dispute here, the only postings that may make a seller's debt.
        assert min(wallet.pending, wallet.available, wallet.reserved, wallet.held) >= 0


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_random_postings_releases_and_reversals_keep_every_invariant(steps: list[object]) -> None:
    run = uuid.uuid4().hex[:8]
    payins: list[str] = []
    for number, step in enumerate(steps):
        reference = f"{run}-{number}"
        if isinstance(step, Payin):
            payin_post(
                seller_account=step.seller, currency=step.currency, gross=step.gross, reference=reference, actor="p"
            )
            payins.append(reference)
        elif isinstance(step, Release):
            with contextlib.suppress(InsufficientFunds):  # refused: more than is pending
                funds_release(
                    seller_account=step.seller,
                    currency=step.currency,
                    amount=step.amount,
                    reference=reference,
                    actor="p",
                )
        elif isinstance(step, Reverse) and payins:
            # refused when the funds were released already: pending cannot go below zero
            with contextlib.suppress(IntegrityError, LedgerError), transaction.atomic():
                journal_reverse(kind="payin", reference=payins[step.index % len(payins)], actor="p")
        _assert_invariants()
