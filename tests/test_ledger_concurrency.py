"""Postings racing into one seller's wallet and the shared PSP clearing account: exact, no deadlock, no lost update."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from djmoney.money import Money

from ledger.models import JournalTransaction
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


def test_a_capture_reported_by_several_workers_at_once_posts_once(issued_key: Any) -> None:
    # given an order being executed, and eight workers that all hear of its capture (executor, webhook, sweep...)
    from payments.models import OrderStatus, OrderTransition, PaymentEvent, PaymentOrder
    from payments.services import order_succeed
    from wallets.services import sellers_ensure

    event = PaymentEvent.objects.create(client=issued_key.client, checkout_id="chk", buyer_id="b")
    sellers_ensure(accounts=["seller_7"])
    order = PaymentOrder.objects.create(
        event=event, position=0, payment_order_id="po_race", seller_id="seller_7", amount=Money(Decimal("10.00"), "EUR")
    )
    order.start_execution(actor="test")
    order.save()
    barrier = threading.Barrier(8)

    def report(worker: int) -> str:
        barrier.wait()
        try:
            return order_succeed(payment_order_id="po_race", psp_reference="pi_race", actor=f"worker-{worker}").status
        finally:
            connection.close()

    # when they report it together
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(report, range(8)))

    # then it succeeded once: one transition, one pay-in, the seller's share counted once
    assert set(statuses) == {OrderStatus.SUCCESS}
    assert OrderTransition.objects.filter(order=order, to_status=OrderStatus.SUCCESS).count() == 1
    assert JournalTransaction.objects.filter(kind="payin", reference="po_race").count() == 1
    (wallet,) = wallet_balances(seller_account="seller_7")
    assert wallet.pending == 1000 - platform_fee(1000, "EUR")


def test_one_event_posted_by_several_workers_at_once_is_posted_once() -> None:
    from ledger.models import Side
    from ledger.services import Line, journal_post
    from wallets.models import Bucket
    from wallets.services import wallet_account, wallet_ensure

    wallet_ensure(seller_account="seller_7", currency="EUR")
    lines = [
        Line(psp_clearing_account("EUR"), Side.DEBIT, 500),
        Line(wallet_account("seller_7", "EUR", Bucket.PENDING), Side.CREDIT, 500),
    ]
    barrier = threading.Barrier(8)

    def post(worker: int) -> bool:
        barrier.wait()
        try:
            with transaction.atomic():
                return journal_post(kind="manual", reference="same-event", lines=lines, actor=f"w{worker}").created
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(post, range(8)))

    assert created.count(True) == 1
    assert JournalTransaction.objects.filter(kind="manual", reference="same-event").count() == 1
    assert wallet_balances(seller_account="seller_7")[0].pending == 500
