"""Money after the payment, over stripe-python: refunds (and one that fails later), transfers and their reversals,
disputes opened and closed by control calls, and the balance transactions that book all of it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import stripe

from psp_sandbox.models import BalanceTransaction, Charge, Refund, Transfer
from tests.conftest import unique
from tests.psp_helpers import configure, control, get, intent_params
from tests.webhook_receiver import Receiver, receiving_webhooks

if TYPE_CHECKING:
    from tests.sandbox import Sandbox

over_http = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(sandbox: Sandbox) -> Iterator[Receiver]:
    with receiving_webhooks() as running:
        configure(sandbox, webhook_url=running.url)
        yield running


def paid_intent(sandbox: Sandbox, payment_method: str = "pm_card_visa", amount: int = 1999) -> stripe.PaymentIntent:
    return sandbox.client.v1.payment_intents.create(params=intent_params(payment_method, amount=amount))


# --- Refunds ----------------------------------------------------------------------------------------------------------


@over_http
def test_a_full_refund_books_a_negative_balance_transaction_and_sends_its_events(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    # given
    intent = paid_intent(sandbox)
    # when
    refund = sandbox.client.v1.refunds.create(
        params={"payment_intent": intent.id, "reason": "requested_by_customer", "metadata": {"refund_id": "rf_1"}},
        options={"idempotency_key": unique("idem")},
    )
    # then
    assert re.fullmatch(r"re_[A-Za-z0-9]{24}", refund.id)
    assert (refund.amount, refund.currency, refund.status, refund.charge) == (
        1999,
        "eur",
        "succeeded",
        intent.latest_charge,
    )
    assert (refund.payment_intent, refund.reason, refund.metadata["refund_id"]) == (
        intent.id,
        "requested_by_customer",
        "rf_1",
    )
    txn = sandbox.client.v1.balance_transactions.retrieve(
        str(refund.balance_transaction), params={"expand": ["source"]}
    )
    assert (txn.type, txn.reporting_category, txn.amount, txn.fee, txn.net) == ("refund", "refund", -1999, 0, -1999)
    assert isinstance(txn.source, stripe.Refund)
    assert txn.source.id == refund.id
    charge = Charge.objects.get(pk=refund.charge)
    assert charge.amount_refunded == 1999
    receiver.wait_for(lambda r: "charge.refunded" in r.event_types())
    assert receiver.event_types() == ["payment_intent.succeeded", "refund.created", "charge.refunded"]
    refunded = receiver.delivered()[2].verified().data.object
    assert (refunded["amount_refunded"], refunded["refunded"]) == (1999, True)
    # and nothing is left to refund
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.refunds.create(params={"charge": str(refund.charge)})
    assert (caught.value.http_status, caught.value.code) == (400, "charge_already_refunded")


@over_http
def test_partial_refunds_add_up_and_more_than_is_left_is_amount_too_large(sandbox: Sandbox) -> None:
    intent = paid_intent(sandbox)
    first = sandbox.client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})
    second = sandbox.client.v1.refunds.create(params={"charge": str(intent.latest_charge), "amount": 1000})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})

    assert (caught.value.code, caught.value.param) == ("amount_too_large", "amount")
    assert "4.99" in str(caught.value.user_message)
    rest = sandbox.client.v1.refunds.create(params={"payment_intent": intent.id})
    assert rest.amount == 499
    listed = sandbox.client.v1.refunds.list(params={"payment_intent": intent.id})
    assert [r.id for r in listed.data] == [rest.id, second.id, first.id]
    assert sandbox.client.v1.refunds.retrieve(first.id).amount == 500


@over_http
def test_a_refund_is_idempotent_under_its_key(sandbox: Sandbox) -> None:
    intent = paid_intent(sandbox)
    key = unique("idem")

    first = sandbox.client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 100}, options={"idempotency_key": key}
    )
    again = sandbox.client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 100}, options={"idempotency_key": key}
    )

    assert again.id == first.id
    assert Refund.objects.count() == 1


@over_http
@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"payment_intent": "pi_missing"}, 400, "resource_missing"),
        ({"charge": "ch_missing"}, 400, "resource_missing"),
        ({}, 400, None),
        ({"payment_intent": "pi_x", "charge": "ch_x"}, 400, None),
        ({"payment_intent": "pi_x", "amount": 0}, 400, "parameter_invalid_integer"),
    ],
)
def test_refund_requests_stripe_would_refuse_are_400s(
    sandbox: Sandbox, params: dict[str, object], status: int, code: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.refunds.create(params=params)  # type: ignore[arg-type]
    assert (caught.value.http_status, caught.value.code) == (status, code)


@over_http
def test_an_intent_without_a_successful_charge_cannot_be_refunded(sandbox: Sandbox) -> None:
    with pytest.raises(stripe.CardError) as declined:
        paid_intent(sandbox, "pm_card_chargeDeclined")
    assert declined.value.error is not None
    assert declined.value.error.payment_intent is not None

    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.refunds.create(params={"payment_intent": declined.value.error.payment_intent.id})

    assert caught.value.code == "charge_not_refundable"


@over_http
def test_a_refund_of_a_refund_fail_card_fails_later_and_gives_the_money_back(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    # given
    configure(sandbox, processing_delay_seconds=0.2)
    intent = paid_intent(sandbox, "pm_card_refundFail")
    # when
    refund = sandbox.client.v1.refunds.create(params={"payment_intent": intent.id})
    # then
    assert refund.status == "succeeded"
    receiver.wait_for(lambda r: "refund.failed" in r.event_types())
    assert receiver.event_types()[-2:] == ["refund.updated", "refund.failed"]
    updated = receiver.delivered()[-2].verified()
    assert updated.data.object["status"] == "failed"
    assert updated.data.previous_attributes.to_dict() == {"status": "succeeded"}
    failed = sandbox.client.v1.refunds.retrieve(refund.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    back = BalanceTransaction.objects.get(pk=failed.failure_balance_transaction)
    assert (back.reporting_category, back.amount, back.source) == ("refund_failure", 1999, refund.id)
    assert Charge.objects.get(pk=refund.charge).amount_refunded == 0


# --- Transfers --------------------------------------------------------------------------------------------------------


@over_http
def test_a_transfer_books_a_negative_balance_transaction_and_sends_transfer_created(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    transfer = sandbox.client.v1.transfers.create(
        params={
            "amount": 1500,
            "currency": "eur",
            "destination": "acct_1SellerSeven",
            "metadata": {"payout_id": "pout_1"},
            "transfer_group": "payout_2026_11",
            "description": "Payout pout_1",
        },
        options={"idempotency_key": "pout_1"},
    )

    assert re.fullmatch(r"tr_[A-Za-z0-9]{24}", transfer.id)
    assert (transfer.amount, transfer.destination, transfer.reversed, transfer.transfer_group) == (
        1500,
        "acct_1SellerSeven",
        False,
        "payout_2026_11",
    )
    txn = BalanceTransaction.objects.get(pk=transfer.balance_transaction)
    assert (txn.type, txn.reporting_category, txn.amount, txn.net, txn.source) == (
        "transfer",
        "transfer",
        -1500,
        -1500,
        transfer.id,
    )
    receiver.wait_for(lambda r: r.event_types() == ["transfer.created"])
    assert sandbox.client.v1.transfers.retrieve(transfer.id).metadata["payout_id"] == "pout_1"
    listed = sandbox.client.v1.transfers.list(params={"destination": "acct_1SellerSeven"})
    assert [t.id for t in listed.data] == [transfer.id]


@over_http
@pytest.mark.parametrize(
    ("destination", "code", "param"),
    [
        ("acct_invalid", "resource_missing", "destination"),
        ("acct_invalid_seller_9", "resource_missing", "destination"),
        ("seller_7", "resource_missing", "destination"),
        ("acct_insufficient_funds", "balance_insufficient", None),
    ],
)
def test_a_transfer_to_a_test_account_that_fails_is_a_400(
    sandbox: Sandbox, destination: str, code: str, param: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.transfers.create(params={"amount": 100, "currency": "eur", "destination": destination})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (400, code, param)
    assert Transfer.objects.count() == 0


@over_http
def test_reversing_a_transfer_gives_the_money_back_and_sends_transfer_reversed(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    transfer = sandbox.client.v1.transfers.create(params={"amount": 1000, "currency": "eur", "destination": "acct_1A"})

    partial = sandbox.client.v1.transfers.reversals.create(transfer.id, params={"amount": 400})
    rest = sandbox.client.v1.transfers.reversals.create(transfer.id)

    assert (partial.amount, rest.amount) == (400, 600)
    reversed_transfer = sandbox.client.v1.transfers.retrieve(transfer.id)
    assert (reversed_transfer.amount_reversed, reversed_transfer.reversed) == (1000, True)
    txn = BalanceTransaction.objects.get(pk=rest.balance_transaction)
    assert (txn.type, txn.reporting_category, txn.amount) == ("transfer_refund", "transfer_reversal", 600)
    receiver.wait_for(lambda r: r.event_types().count("transfer.reversed") == 2)
    with pytest.raises(stripe.InvalidRequestError):
        sandbox.client.v1.transfers.reversals.create(transfer.id, params={"amount": 1})


# --- Disputes ---------------------------------------------------------------------------------------------------------


@over_http
@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_dispute_withdraws_the_amount_and_fee_and_a_won_one_gives_them_back(
    sandbox: Sandbox, receiver: Receiver, outcome: str
) -> None:
    # given
    intent = paid_intent(sandbox)
    charge_id = str(intent.latest_charge)
    # when
    opened = control(sandbox, f"/v1/sandbox/charges/{charge_id}/dispute", reason="fraudulent")
    dispute_id = opened.json()["id"]
    closed = control(sandbox, f"/v1/sandbox/disputes/{dispute_id}/close", outcome=outcome)
    # then
    assert opened.status_code == 200, opened.text
    assert re.fullmatch(r"dp_[A-Za-z0-9]{24}", dispute_id)
    dispute = sandbox.client.v1.disputes.retrieve(dispute_id)
    assert (dispute.amount, dispute.charge, dispute.status, dispute.reason) == (1999, charge_id, outcome, "fraudulent")
    withdrawal = dispute.balance_transactions[0]
    assert (withdrawal.reporting_category, withdrawal.amount, withdrawal.fee, withdrawal.net) == (
        "dispute",
        -1999,
        1500,
        -3499,
    )
    expected = ["charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.closed"]
    if outcome == "won":
        reversal = dispute.balance_transactions[1]
        assert (reversal.reporting_category, reversal.amount, reversal.fee, reversal.net) == (
            "dispute_reversal",
            1999,
            -1500,
            3499,
        )
        expected.append("charge.dispute.funds_reinstated")
    else:
        assert len(dispute.balance_transactions) == 1
    receiver.wait_for(lambda r: len(r.event_types()) == 1 + len(expected))
    assert [item.event["type"] for item in receiver.of_object(dispute_id)] == expected
    assert Charge.objects.get(pk=charge_id).disputed is True
    assert closed.json()["status"] == outcome
    # closed is closed; a disputed charge is not refunded
    assert control(sandbox, f"/v1/sandbox/disputes/{dispute_id}/close", outcome="won").status_code == 400
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.refunds.create(params={"charge": charge_id})
    assert caught.value.code == "charge_disputed"


# --- Balance transactions ---------------------------------------------------------------------------------------------


@over_http
def test_balance_transactions_are_listed_newest_first_with_cursors_and_filters(sandbox: Sandbox) -> None:
    # given: a charge, a refund of it, a transfer
    intent = paid_intent(sandbox)
    refund = sandbox.client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 100})
    transfer = sandbox.client.v1.transfers.create(params={"amount": 300, "currency": "eur", "destination": "acct_1A"})
    ids = list(BalanceTransaction.objects.order_by("-created", "-id").values_list("id", flat=True))
    assert len(ids) == 3
    # when / then: pages of two, both ways
    first = sandbox.client.v1.balance_transactions.list(params={"limit": 2})
    assert ([t.id for t in first.data], first.has_more) == (ids[:2], True)
    after = sandbox.client.v1.balance_transactions.list(params={"limit": 2, "starting_after": ids[1]})
    assert ([t.id for t in after.data], after.has_more) == (ids[2:], False)
    before = sandbox.client.v1.balance_transactions.list(params={"limit": 1, "ending_before": ids[2]})
    assert ([t.id for t in before.data], before.has_more) == ([ids[1]], True)
    # filters
    assert [t.source for t in sandbox.client.v1.balance_transactions.list(params={"type": "refund"}).data] == [
        refund.id
    ]
    by_source = sandbox.client.v1.balance_transactions.list(params={"source": transfer.id, "expand": ["data.source"]})
    assert isinstance(by_source.data[0].source, stripe.Transfer)
    now = int(time.time())
    assert len(sandbox.client.v1.balance_transactions.list(params={"created": {"gte": now - 60}}).data) == 3
    assert sandbox.client.v1.balance_transactions.list(params={"created": {"lt": now - 60}}).data == []
    # the raw list object
    raw = get(sandbox, "/v1/balance_transactions", limit=1).json()
    assert (raw["object"], raw["url"], raw["has_more"], len(raw["data"])) == (
        "list",
        "/v1/balance_transactions",
        True,
        1,
    )
    unknown = get(sandbox, "/v1/balance_transactions", starting_after="txn_missing")
    assert (unknown.status_code, unknown.json()["error"]["param"]) == (400, "starting_after")
    assert get(sandbox, "/v1/balance_transactions", limit=101).status_code == 400
