"""Postings racing into one seller's wallet and the shared PSP clearing account: exact, no deadlock, no lost update."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from ledger.selectors import account_balance, trial_balances
from wallets.fees import platform_fee
from wallets.selectors import wallet_balances, wallet_ledger_balances
from wallets.services import funds_release, payin_post, platform_fees_account, psp_clearing_account

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16
POSTINGS = 100


def test_sixteen_threads_posting_into_one_wallet_lose_nothing() -> None:
    # given one seller, and 16 workers that each post 100 pay-ins and release half of each
    gross = 1_000
    fee = platform_fee(gross, "EUR")
    barrier = threading.Barrier(THREADS)

    def work(worker: int) -> int:
        barrier.wait()
        try:
            for n in range(POSTINGS):
                reference = f"po_{worker}_{n}"
                with transaction.atomic():
                    payin_post(seller_account="seller_7", currency="EUR", gross=gross, reference=reference, actor="t")
                with transaction.atomic():
                    funds_release(seller_account="seller_7", currency="EUR", amount=100, reference=reference, actor="t")
            return POSTINGS
        finally:
            connection.close()

    # when they all run at once
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        done = sum(pool.map(work, range(THREADS)))

    # then every posting counted, exactly once
    count = THREADS * POSTINGS
    assert done == count
    assert account_balance(code=psp_clearing_account("EUR").code) == count * gross
    assert account_balance(code=platform_fees_account("EUR").code) == count * fee
    (wallet,) = wallet_balances(seller_account="seller_7")
    assert (wallet.pending, wallet.available) == (count * (gross - fee - 100), count * 100)
    assert wallet_ledger_balances(seller_account="seller_7", currency="EUR") == wallet
    assert all(trial_balance.balanced for trial_balance in trial_balances())
