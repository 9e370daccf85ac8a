"""Pay-out, refunds and disputes end to end: our API (live server), a Celery worker on Redis, the sandbox PSP in its
own process through stripe-python, and its signed webhooks delivered over HTTP. The ledger check runs clean after
every test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from ledger.models import Entry, JournalTransaction
from payments import execution
from payments.models import (
    Dispute,
    DisputeStatus,
    OrderStatus,
    PaymentOrder,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
)
from payments.payouts import payout_create, payout_execute, payout_run
from payments.psp.gateway import UnknownPspOutcome
from payments.recovery import recovery_sweep
from payments.releases import funds_release_due, order_funds_release
from psp_sandbox.models import Transfer
from reconciliation.services import ledger_check_run
from tests.conftest import order, payment_body, unique, wait_until
from tests.psp_helpers import configure, control
from tests.sandbox import Sandbox
from wallets.models import Wallet
from wallets.services import seller_payout_settings_update

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wired(sandbox: Sandbox, settings: Any, live_server: Any, celery_worker_app: Any) -> Iterator[Sandbox]:
    settings.STRIPE_API_BASE = sandbox.url
    settings.PSP_RETRY_BACKOFF_SECONDS = 1
    settings.PLATFORM_FEE_PERCENT = 10
    settings.PLATFORM_FEE_ON_REFUND = "refunded"
    configure(sandbox, reset=True, webhook_url=f"{live_server.url}/v1/webhooks/stripe", processing_delay_seconds=0.5)
    yield sandbox
    configure(sandbox, reset=True)
    run = ledger_check_run(actor="test")
    assert run.violations == [], run.violations


def captured(
    post_payment: Callable[..., Any],
    *,
    seller: str,
    amount: str = "100.00",
    currency: str = "EUR",
    method: str = "pm_card_visa",
) -> PaymentOrder:
    body = payment_body(
        payment_method={"token": method},
        payment_orders=[order(seller_account=seller, amount=amount, currency=currency)],
    )
    created = post_payment(body).json()
    order_id = created["payment_orders"][0]["payment_order_id"]
    wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS)
    return PaymentOrder.objects.get(payment_order_id=order_id)


def wallet(seller: str, currency: str = "EUR") -> tuple[int, int, int, int]:
    w = Wallet.objects.get(seller_id=seller, currency=currency)
    return w.pending, w.available, w.reserved, w.held


def released(api: Any, po: PaymentOrder) -> Any:
    return api.post(f"/v1/payment-orders/{po.payment_order_id}/release", format="json")


def refund(api: Any, po: PaymentOrder, **body: Any) -> Any:
    return api.post(
        f"/v1/payment-orders/{po.payment_order_id}/refunds", body, format="json", HTTP_IDEMPOTENCY_KEY=unique("k")
    )


def payable(seller: str, account: str = "acct_seller_ok", currency: str = "") -> None:
    seller_payout_settings_update(seller_account=seller, payout_account=account, payout_currency=currency)


def refund_reaches(refund_id: str, status: str) -> Callable[[], bool]:
    return lambda: Refund.objects.get(refund_id=refund_id).status == status


def payout_reaches(payout_id: str, status: str) -> Callable[[], bool]:
    return lambda: Payout.objects.get(payout_id=payout_id).status == status


# --- Releases -----------------------------------------------------------------------------------------------------


def test_release_by_api_makes_the_orders_share_available_once(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    po = captured(post_payment, seller=seller)
    assert wallet(seller) == (9000, 0, 0, 0)  # 100.00 less the 10 % fee

    first, second = released(api, po), released(api, po)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["released"] is True
    assert wallet(seller) == (0, 9000, 0, 0)
    assert JournalTransaction.objects.filter(kind="release").filter(reference__startswith=f"{seller}:").count() == 1


def test_release_of_an_order_never_captured_is_a_409_and_changes_nothing(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    body = payment_body(
        payment_method={"token": "pm_card_chargeDeclined"}, payment_orders=[order(seller_account=seller)]
    )
    order_id = post_payment(body).json()["payment_orders"][0]["payment_order_id"]
    wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.FAILED)

    answer = api.post(f"/v1/payment-orders/{order_id}/release", format="json")

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "order_not_captured"
    assert PaymentOrder.objects.get(payment_order_id=order_id).released_at is None


def test_funds_release_by_themselves_after_the_hold_period(
    wired: Sandbox, post_payment: Callable[..., Any], settings: Any
) -> None:
    settings.FUNDS_HOLD_DAYS = 7
    seller = unique("seller")
    old, fresh = captured(post_payment, seller=seller), captured(post_payment, seller=seller, amount="50.00")
    PaymentOrder.objects.filter(pk=old.pk).update(captured_at=timezone.now() - timedelta(days=8))

    funds_release_due()

    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.released_at is not None
    assert fresh.released_at is None
    assert wallet(seller) == (4500, 9000, 0, 0)


# --- Payouts ------------------------------------------------------------------------------------------------------


def test_two_payout_runs_at_once_pay_each_seller_once(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    sellers = [unique("seller") for _ in range(4)]
    for seller in sellers:
        released(api, captured(post_payment, seller=seller))
        payable(seller)
    barrier = threading.Barrier(2)
    reports: list[Any] = []

    def run() -> None:
        try:
            barrier.wait()
            reports.append(payout_run(actor="test"))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    created = [payout_id for report in reports for payout_id in report.created]
    payouts = Payout.objects.filter(seller_id__in=sellers)
    assert sorted(created) == sorted(payouts.values_list("payout_id", flat=True))
    assert sorted(payouts.values_list("seller_id", flat=True)) == sorted(sellers)
    for payout in payouts:
        wait_until(payout_reaches(payout.payout_id, PayoutStatus.PAID))
    transfers = Transfer.objects.filter(transfer_group__in=created)
    assert transfers.count() == 4
    assert {t.amount for t in transfers} == {9000}
    for seller in sellers:
        assert wallet(seller) == (0, 0, 0, 0)


def test_a_payout_the_provider_refuses_gives_the_funds_back(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    released(api, captured(post_payment, seller=seller))
    payable(seller, account="acct_invalid_closed")

    answer = api.post(f"/v1/sellers/{seller}/payouts", {}, format="json", HTTP_IDEMPOTENCY_KEY=unique("k"))

    assert answer.status_code == 201, answer.content
    payout_id = answer.json()["payouts"][0]["payout_id"]
    wait_until(payout_reaches(payout_id, PayoutStatus.FAILED))
    assert Payout.objects.get(payout_id=payout_id).failure_code == "resource_missing"
    assert wallet(seller) == (0, 9000, 0, 0)


def test_a_payout_whose_answer_is_lost_is_unknown_until_a_retry_finds_it_paid_once(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    released(api, captured(post_payment, seller=seller))
    payable(seller)
    configure(wired, fault_lost_response_rate=1.0, fault_seed="payout")
    # Created here, and executed here: the worker's copy of the task may run too; the executor is safe twice.
    payout = payout_create(seller_account=seller, currency="EUR", actor="test")

    with pytest.raises(UnknownPspOutcome):
        payout_execute(payout_id=payout.payout_id)
    assert Payout.objects.get(payout_id=payout.payout_id).status == PayoutStatus.UNKNOWN
    configure(wired, fault_lost_response_rate=0.0)

    wait_until(lambda: payout_execute(payout_id=payout.payout_id).status == PayoutStatus.PAID)

    assert Transfer.objects.filter(transfer_group=payout.payout_id).count() == 1
    assert wallet(seller) == (0, 0, 0, 0)


def test_the_recovery_sweep_sends_an_unknown_payout_again_and_it_is_paid_once(
    sandbox: Sandbox, settings: Any, post_payment: Callable[..., Any]
) -> None:
    # No worker here: the payout's own task is as good as lost, and only the sweep can bring it back.
    settings.STRIPE_API_BASE = sandbox.url
    seller = unique("seller")
    po = PaymentOrder.objects.get(
        payment_order_id=post_payment(
            payment_body(payment_orders=[order(seller_account=seller, amount="100.00")])
        ).json()["payment_orders"][0]["payment_order_id"]
    )
    execution.order_execute(payment_order_id=po.payment_order_id)
    order_funds_release(payment_order_id=po.payment_order_id, actor="test")
    payable(seller)
    configure(sandbox, reset=True, fault_lost_response_rate=1.0, fault_seed="sweep")
    payout = payout_create(seller_account=seller, currency="EUR", actor="test")
    with pytest.raises(UnknownPspOutcome):
        payout_execute(payout_id=payout.payout_id)
    configure(sandbox, reset=True)
    Payout.objects.filter(pk=payout.pk).update(updated_at=timezone.now() - timedelta(minutes=10))

    report = recovery_sweep()

    assert report is not None
    assert report.payouts_requeued == [payout.payout_id]
    assert payout_execute(payout_id=payout.payout_id).status == PayoutStatus.PAID  # what the queued task runs
    assert Transfer.objects.filter(transfer_group=payout.payout_id).count() == 1
    assert wallet(seller) == (0, 0, 0, 0)
    assert ledger_check_run(actor="test").violations == []


def test_an_on_demand_payout_below_the_minimum_or_without_an_account_is_refused(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    released(api, captured(post_payment, seller=seller, amount="5.00"))

    no_account = api.post(f"/v1/sellers/{seller}/payouts", {}, format="json", HTTP_IDEMPOTENCY_KEY=unique("k"))
    payable(seller)
    too_small = api.post(f"/v1/sellers/{seller}/payouts", {}, format="json", HTTP_IDEMPOTENCY_KEY=unique("k"))

    assert (no_account.status_code, too_small.status_code) == (409, 409)
    assert too_small.json()["error"]["code"] == "nothing_to_pay_out"
    assert not Payout.objects.filter(seller_id=seller).exists()
    assert wallet(seller) == (0, 450, 0, 0)


def test_a_payout_in_another_currency_balances_each_currency_on_its_own(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    call_command("update_rates")
    seller = unique("seller")
    released(api, captured(post_payment, seller=seller))
    payable(seller, currency="USD")

    payout = payout_create(seller_account=seller, currency="EUR", actor="test")
    wait_until(payout_reaches(payout.payout_id, PayoutStatus.PAID))

    payout.refresh_from_db()
    assert (payout.amount, payout.payout_currency) == (9000, "USD")
    assert payout.payout_amount == int((payout.fx_rate * 9000).to_integral_value())
    transfer = Transfer.objects.get(transfer_group=payout.payout_id)
    assert (transfer.currency, transfer.amount) == ("usd", payout.payout_amount)
    send = JournalTransaction.objects.get(kind="payout_send", reference=payout.payout_id)
    for currency in ("EUR", "USD"):
        entries = Entry.objects.filter(journal=send, currency=currency)
        debits = sum(e.amount for e in entries if e.side == "D")
        credits = sum(e.amount for e in entries if e.side == "C")
        assert debits == credits > 0
    assert wallet(seller) == (0, 0, 0, 0)


# --- Refunds ------------------------------------------------------------------------------------------------------


def test_a_partial_then_a_full_refund_split_the_fee_exactly(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    po = captured(post_payment, seller=seller, amount="10.00")  # fee 1.00, seller 9.00

    partial = refund(api, po, amount="3.33")
    assert partial.status_code == 201, partial.content
    rest = refund(api, po)
    assert rest.status_code == 201, rest.content

    for answer in (partial, rest):
        wait_until(refund_reaches(answer.json()["refund_id"], RefundStatus.SUCCEEDED))
    refunds = list(Refund.objects.filter(order=po).order_by("pk"))
    assert [r.amount for r in refunds] == [333, 667]
    assert sum(r.platform_fee_part for r in refunds) == 100  # the whole fee, not one unit more or less
    assert [r.platform_fee_part for r in refunds] == [33, 67]
    po.refresh_from_db()
    assert po.status == OrderStatus.REFUNDED
    assert [t.to_status for t in po.transitions.order_by("pk")][-2:] == ["PARTIALLY_REFUNDED", "REFUNDED"]
    shown = api.get(f"/v1/payment-orders/{po.payment_order_id}").json()
    assert (shown["status"], [(r["amount"], r["status"]) for r in shown["refunds"]]) == (
        "REFUNDED",
        [("3.33", "SUCCEEDED"), ("6.67", "SUCCEEDED")],
    )
    assert wallet(seller) == (0, 0, 0, 0)
    assert sorted(r.amount for r in wired.client.v1.refunds.list({"payment_intent": po.psp_reference}).data) == [
        333,
        667,
    ]


def test_an_over_refund_is_a_400_and_changes_nothing(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any, row_counts: Callable[[], dict[str, int]]
) -> None:
    seller = unique("seller")
    po = captured(post_payment, seller=seller, amount="10.00")
    assert refund(api, po, amount="4.00").status_code == 201
    before = (wallet(seller), Refund.objects.count(), JournalTransaction.objects.count())

    answer = refund(api, po, amount="6.01")

    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "refund_exceeds_captured",
        "message": "At most 600 minor units of EUR are left to refund on order " + po.payment_order_id + ".",
        "field": "amount",
    }
    assert (wallet(seller), Refund.objects.count(), JournalTransaction.objects.count()) == before


def test_a_refund_after_the_payout_takes_the_balance_negative_and_the_next_payout_nets_it_off(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    first = captured(post_payment, seller=seller)
    released(api, first)
    payable(seller)
    paid = payout_create(seller_account=seller, currency="EUR", actor="test")
    wait_until(payout_reaches(paid.payout_id, PayoutStatus.PAID))

    answer = refund(api, first, amount="50.00")  # seller's part 45.00, platform's 5.00
    wait_until(refund_reaches(answer.json()["refund_id"], RefundStatus.SUCCEEDED))
    assert wallet(seller) == (0, -4500, 0, 0)
    balance = api.get(f"/v1/sellers/{seller}/balance").json()["balances"][0]
    assert balance["available"] == "-45.00"

    second = captured(post_payment, seller=seller)
    released(api, second)
    net = payout_create(seller_account=seller, currency="EUR", actor="test")
    wait_until(payout_reaches(net.payout_id, PayoutStatus.PAID))

    assert net.amount == 9000 - 4500
    assert Transfer.objects.get(transfer_group=net.payout_id).amount == 4500
    assert wallet(seller) == (0, 0, 0, 0)


def test_a_refund_that_fails_at_the_psp_is_booked_back_and_the_order_is_captured_again(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    po = captured(post_payment, seller=seller, method="pm_card_refundFail")

    answer = refund(api, po)
    refund_id = answer.json()["refund_id"]

    wait_until(refund_reaches(refund_id, RefundStatus.FAILED))
    po.refresh_from_db()
    assert po.status == OrderStatus.SUCCESS
    assert [t.to_status for t in po.transitions.order_by("pk")][-2:] == ["REFUNDED", "SUCCESS"]
    assert wallet(seller) == (9000, 0, 0, 0)
    assert JournalTransaction.objects.filter(kind="refund_failed", reference=refund_id).count() == 1


# --- Disputes -----------------------------------------------------------------------------------------------------


def _dispute(sandbox: Sandbox, po: PaymentOrder) -> str:
    charge_id = sandbox.client.v1.payment_intents.retrieve(po.psp_reference).latest_charge
    opened = control(sandbox, f"/v1/sandbox/charges/{charge_id}/dispute")
    assert opened.ok, opened.text
    dispute_id: str = opened.json()["id"]
    wait_until(lambda: Dispute.objects.filter(psp_dispute_id=dispute_id).exists())
    return dispute_id


def test_a_dispute_holds_the_sellers_part_and_winning_it_gives_it_back(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    po = captured(post_payment, seller=seller)
    released(api, po)

    dispute_id = _dispute(wired, po)
    assert wallet(seller) == (0, 0, 0, 9000)
    assert refund(api, po).json()["error"]["code"] == "order_disputed"
    shown = api.get(f"/v1/payment-orders/{po.payment_order_id}").json()
    assert shown["disputes"] == [{"dispute_id": dispute_id, "amount": "100.00", "status": "OPEN"}]

    control(wired, f"/v1/sandbox/disputes/{dispute_id}/close", outcome="won")
    wait_until(lambda: Dispute.objects.get(psp_dispute_id=dispute_id).status == DisputeStatus.WON)
    assert wallet(seller) == (0, 9000, 0, 0)
    assert api.get(f"/v1/payment-orders/{po.payment_order_id}").json()["disputes"][0]["status"] == "WON"


def test_a_lost_dispute_debits_the_seller_and_books_the_psps_fee(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    seller = unique("seller")
    po = captured(post_payment, seller=seller)  # not released: the hold comes from pending

    dispute_id = _dispute(wired, po)
    assert wallet(seller) == (0, 0, 0, 9000)
    control(wired, f"/v1/sandbox/disputes/{dispute_id}/close", outcome="lost")

    wait_until(lambda: Dispute.objects.get(psp_dispute_id=dispute_id).status == DisputeStatus.LOST)
    dispute = Dispute.objects.get(psp_dispute_id=dispute_id)
    assert (dispute.amount, dispute.fee) == (10000, 1500)
    assert wallet(seller) == (0, 0, 0, 0)
    lost = JournalTransaction.objects.get(kind="dispute_lost", reference=dispute_id)
    by_account = {e.account.code: (e.side, e.amount) for e in lost.entries.select_related("account")}
    assert by_account["psp_fees:EUR"] == ("D", 1500)
    assert by_account["platform_fees:EUR"] == ("D", 1000)
    assert by_account[f"seller_held:{seller}:EUR"] == ("D", 9000)
    # released afterwards: nothing is left to release
    assert released(api, po).status_code == 200
    assert wallet(seller) == (0, 0, 0, 0)
