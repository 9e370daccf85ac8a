"""The Stripe adapter's refunds and transfers, and its reading of refund, dispute and transfer events, against the
sandbox PSP in its own process, over HTTP, through stripe-python. Every event read here is one the sandbox recorded
(``GET /v1/events``) after the test drove it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from payments.psp import stripe as stripe_adapter
from payments.psp.gateway import (
    ChargeStatus,
    DisputeNotice,
    DisputeStatus,
    PspNotice,
    RefundResult,
    RefundStatus,
    TransferResult,
    TransferStatus,
    UnknownPspOutcome,
)
from payments.psp.stripe import StripeGateway
from psp_sandbox.models import Charge, Refund, Transfer
from tests.conftest import unique, wait_until
from tests.psp_helpers import configure, control, get
from tests.sandbox import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def paid(gateway: StripeGateway, payment_method: str = "pm_card_visa", amount: int = 1999) -> str:
    """A charge of ``amount`` EUR cents that succeeded: its PaymentIntent's id."""
    result = gateway.charge(payment_order_id=unique("po"), amount=amount, currency="EUR", payment_method=payment_method)
    assert result.status == ChargeStatus.SUCCEEDED, result
    return result.psp_reference


def refund(gateway: StripeGateway, payment_intent: str, amount: int, refund_id: str = "") -> RefundResult:
    return gateway.refund(
        refund_id=refund_id or unique("rf"),
        payment_intent=payment_intent,
        amount=amount,
        currency="EUR",
        payment_order_id="po_refunded",
    )


def transfer(gateway: StripeGateway, payout_id: str, destination: str = "acct_1SellerSeven") -> TransferResult:
    return gateway.transfer(
        payout_id=payout_id, destination=destination, amount=1500, currency="EUR", description=f"Payout {payout_id}"
    )


def payloads(sandbox: Sandbox, event_type: str, object_id: str) -> list[str]:
    """The bodies of the sandbox's events of this type about this object, as it recorded and would send them."""
    response = get(sandbox, "/v1/events", type=event_type, limit=100)
    assert response.status_code == 200, response.text
    return [json.dumps(event) for event in response.json()["data"] if event["data"]["object"]["id"] == object_id]


def notice(gateway: StripeGateway, sandbox: Sandbox, event_type: str, object_id: str) -> PspNotice:
    [payload] = payloads(sandbox, event_type, object_id)
    return gateway.webhook_notice(payload=payload)


def relabelled(sandbox: Sandbox, event_type: str, object_id: str, *, as_type: str, **changes: Any) -> str:
    """A recorded event under another type, or with some of its object's fields changed: what the sandbox never
    sends, which Stripe sends with the same object."""
    [payload] = payloads(sandbox, event_type, object_id)
    event = json.loads(payload)
    event["type"] = as_type
    event["data"]["object"].update(changes)
    return json.dumps(event)


def charge_of(sandbox: Sandbox, payment_intent: str) -> str:
    return str(sandbox.client.v1.payment_intents.retrieve(payment_intent).latest_charge)


# --- Refunds ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1999, 500])
def test_a_full_or_partial_refund_succeeds_with_its_reference(gateway: StripeGateway, amount: int) -> None:
    # given
    intent = paid(gateway)
    refund_id = unique("rf")
    # when
    result = gateway.refund(
        refund_id=refund_id, payment_intent=intent, amount=amount, currency="EUR", payment_order_id="po_7"
    )
    # then
    assert result.status == RefundStatus.SUCCEEDED
    assert result.psp_reference.startswith("re_")
    at_psp = Refund.objects.get(pk=result.psp_reference)
    assert (at_psp.payment_intent_id, at_psp.amount) == (intent, amount)
    assert at_psp.metadata == {"refund_id": refund_id, "payment_order_id": "po_7"}
    assert Charge.objects.get(payment_intent_id=intent).amount_refunded == amount


def test_the_refund_id_makes_a_retry_refund_once(gateway: StripeGateway) -> None:
    intent = paid(gateway)
    refund_id = unique("rf")

    first = refund(gateway, intent, 300, refund_id)
    again = refund(gateway, intent, 300, refund_id)

    assert again == first
    assert first.status == RefundStatus.SUCCEEDED
    assert list(Refund.objects.filter(payment_intent_id=intent).values_list("id", flat=True)) == [first.psp_reference]


def test_more_than_is_left_is_a_permanent_failure(gateway: StripeGateway) -> None:
    intent = paid(gateway)
    assert refund(gateway, intent, 1500).status == RefundStatus.SUCCEEDED

    result = refund(gateway, intent, 500)

    assert (result.status, result.failure_code, result.psp_reference) == (RefundStatus.FAILED, "amount_too_large", "")
    assert "4.99" in result.failure_message
    assert Refund.objects.filter(payment_intent_id=intent).count() == 1


def test_a_refund_of_a_disputed_charge_is_a_permanent_failure(gateway: StripeGateway, sandbox: Sandbox) -> None:
    intent = paid(gateway)
    assert control(sandbox, f"/v1/sandbox/charges/{charge_of(sandbox, intent)}/dispute").status_code == 200

    result = refund(gateway, intent, 100)

    assert (result.status, result.failure_code) == (RefundStatus.FAILED, "charge_disputed")


def test_a_refund_lookup_finds_our_refund_or_nothing(gateway: StripeGateway) -> None:
    intent = paid(gateway)
    ours, other = unique("rf"), unique("rf")
    made = refund(gateway, intent, 200, ours)
    refund(gateway, intent, 300, other)

    assert gateway.refund_lookup(refund_id=ours, payment_intent=intent) == made
    assert gateway.refund_lookup(refund_id=unique("rf_never_sent"), payment_intent=intent) is None
    assert gateway.refund_lookup(refund_id=ours, payment_intent=paid(gateway)) is None


def test_a_refund_lookup_reads_every_page(gateway: StripeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: three refunds of one charge, ours the oldest, and pages of one
    intent = paid(gateway)
    oldest = unique("rf")
    made = refund(gateway, intent, 100, oldest)
    refund(gateway, intent, 100)
    refund(gateway, intent, 100)
    monkeypatch.setattr(stripe_adapter, "LIST_PAGE_SIZE", 1)
    # when / then: the list is newest first, so ours is on the third page
    assert gateway.refund_lookup(refund_id=oldest, payment_intent=intent) == made


def test_a_refund_that_fails_later_is_failed_in_its_events_and_its_lookup(
    gateway: StripeGateway, sandbox: Sandbox
) -> None:
    # given
    configure(sandbox, processing_delay_seconds=0.2)
    intent = paid(gateway, "pm_card_refundFail")
    refund_id = unique("rf")
    # when
    accepted = refund(gateway, intent, 1999, refund_id)
    wait_until(lambda: bool(payloads(sandbox, "refund.failed", accepted.psp_reference)))
    # then
    assert accepted.status == RefundStatus.SUCCEEDED
    failed = RefundResult(
        RefundStatus.FAILED,
        psp_reference=accepted.psp_reference,
        failure_code="expired_or_canceled_card",
        failure_message="refund failed: expired_or_canceled_card",
    )
    assert notice(gateway, sandbox, "refund.created", accepted.psp_reference) == PspNotice(
        refund_id=refund_id, refund_result=accepted
    )
    for event_type in ("refund.updated", "refund.failed"):
        assert notice(gateway, sandbox, event_type, accepted.psp_reference) == PspNotice(
            refund_id=refund_id, refund_result=failed
        )
    # Stripe's older name for refund.updated (the sandbox does not send it) carries the same refund
    legacy = relabelled(sandbox, "refund.updated", accepted.psp_reference, as_type="charge.refund.updated")
    assert gateway.webhook_notice(payload=legacy) == PspNotice(refund_id=refund_id, refund_result=failed)
    assert gateway.refund_lookup(refund_id=refund_id, payment_intent=intent) == failed


def test_charge_refunded_is_a_note_and_a_refund_not_made_by_us_is_not_ours(
    gateway: StripeGateway, sandbox: Sandbox
) -> None:
    # given: a refund made at the PSP directly, without our metadata
    intent = paid(gateway)
    theirs = sandbox.client.v1.refunds.create(params={"payment_intent": intent, "amount": 100})
    # when
    created = notice(gateway, sandbox, "refund.created", theirs.id)
    refunded = notice(gateway, sandbox, "charge.refunded", charge_of(sandbox, intent))
    # then
    assert (created.refund_id, created.refund_result, created.dispute, created.result) == ("", None, None, None)
    assert created.note == f"refund {theirs.id} is not ours: no refund_id in its metadata"
    assert (refunded.refund_result, refunded.dispute, refunded.result) == (None, None, None)
    assert "refund events" in refunded.note


# --- Transfers --------------------------------------------------------------------------------------------------------


def test_a_transfer_is_paid_with_its_reference(gateway: StripeGateway) -> None:
    payout_id = unique("pout")

    result = transfer(gateway, payout_id)

    assert result.status == TransferStatus.PAID
    assert result.psp_reference.startswith("tr_")
    at_psp = Transfer.objects.get(pk=result.psp_reference)
    assert (at_psp.amount, at_psp.currency, at_psp.destination, at_psp.transfer_group) == (
        1500,
        "eur",
        "acct_1SellerSeven",
        payout_id,
    )
    assert (at_psp.metadata, at_psp.description) == ({"payout_id": payout_id}, f"Payout {payout_id}")


def test_the_payout_id_makes_a_retry_transfer_once(gateway: StripeGateway) -> None:
    payout_id = unique("pout")

    first = transfer(gateway, payout_id)
    again = transfer(gateway, payout_id)

    assert again == first
    assert list(Transfer.objects.values_list("id", flat=True)) == [first.psp_reference]


@pytest.mark.parametrize(
    ("destination", "code"),
    [("acct_invalid_seller_9", "resource_missing"), ("acct_insufficient_funds", "balance_insufficient")],
)
def test_a_transfer_the_psp_refuses_is_a_permanent_failure(gateway: StripeGateway, destination: str, code: str) -> None:
    payout_id = unique("pout")

    result = transfer(gateway, payout_id, destination)

    assert (result.status, result.failure_code, result.psp_reference) == (TransferStatus.FAILED, code, "")
    assert result.failure_message
    assert Transfer.objects.count() == 0
    assert gateway.transfer_lookup(payout_id=payout_id) is None


def test_a_transfer_lookup_finds_the_payout_and_a_reversed_one_is_failed(
    gateway: StripeGateway, sandbox: Sandbox
) -> None:
    payout_id = unique("pout")
    made = transfer(gateway, payout_id)
    transfer(gateway, unique("pout"))  # another payout's, to the same account

    assert gateway.transfer_lookup(payout_id=payout_id) == made
    assert gateway.transfer_lookup(payout_id=unique("pout_never_sent")) is None
    sandbox.client.v1.transfers.reversals.create(made.psp_reference, params={"amount": 400})
    assert gateway.transfer_lookup(payout_id=payout_id) == made
    sandbox.client.v1.transfers.reversals.create(made.psp_reference)
    assert gateway.transfer_lookup(payout_id=payout_id) == TransferResult(
        TransferStatus.FAILED,
        psp_reference=made.psp_reference,
        failure_code="reversed",
        failure_message="The transfer was reversed in full.",
    )


def test_transfer_events_are_notes(gateway: StripeGateway, sandbox: Sandbox) -> None:
    made = transfer(gateway, unique("pout"))
    sandbox.client.v1.transfers.reversals.create(made.psp_reference)

    for event_type in ("transfer.created", "transfer.reversed"):
        read = notice(gateway, sandbox, event_type, made.psp_reference)
        assert (read.result, read.refund_result, read.dispute) == (None, None, None)
        assert read.note == "payouts are settled by the PSP's answer to the transfer and by lookups"


# --- A PSP error ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda gateway, intent: refund(gateway, intent, 100),
        lambda gateway, intent: gateway.refund_lookup(refund_id=unique("rf"), payment_intent=intent),
        lambda gateway, intent: transfer(gateway, unique("pout")),
        lambda gateway, intent: gateway.transfer_lookup(payout_id=unique("pout")),
    ],
    ids=["refund", "refund_lookup", "transfer", "transfer_lookup"],
)
def test_a_5xx_is_an_unknown_outcome_never_a_failure(
    gateway: StripeGateway, sandbox: Sandbox, call: Callable[[StripeGateway, str], object]
) -> None:
    intent = paid(gateway)
    configure(sandbox, fault_5xx_rate=1.0)

    with pytest.raises(UnknownPspOutcome):
        call(gateway, intent)
    assert (Refund.objects.count(), Transfer.objects.count()) == (0, 0)


# --- Disputes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "status"), [("won", DisputeStatus.WON), ("lost", DisputeStatus.LOST)])
def test_dispute_events_carry_the_dispute_and_its_outcome(
    gateway: StripeGateway, sandbox: Sandbox, outcome: str, status: DisputeStatus
) -> None:
    # given
    intent = paid(gateway)
    opened = control(sandbox, f"/v1/sandbox/charges/{charge_of(sandbox, intent)}/dispute", reason="fraudulent")
    assert opened.status_code == 200, opened.text
    dispute_id = opened.json()["id"]
    # when
    assert control(sandbox, f"/v1/sandbox/disputes/{dispute_id}/close", outcome=outcome).status_code == 200
    # then
    open_dispute = DisputeNotice(
        dispute_id=dispute_id,
        payment_intent=intent,
        amount=1999,
        currency="EUR",
        fee=1500,
        status=DisputeStatus.OPEN,
        reason="fraudulent",
    )
    for event_type in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
        assert notice(gateway, sandbox, event_type, dispute_id) == PspNotice(dispute=open_dispute)
    closed = notice(gateway, sandbox, "charge.dispute.closed", dispute_id)
    assert closed == PspNotice(dispute=dataclasses.replace(open_dispute, status=status))
    reinstated = payloads(sandbox, "charge.dispute.funds_reinstated", dispute_id)
    assert len(reinstated) == (1 if outcome == "won" else 0)
    for payload in reinstated:
        read = gateway.webhook_notice(payload=payload)
        assert (read.dispute, read.note) == (None, "the dispute's closed event carries its outcome")


def test_an_inquiry_closed_as_a_warning_is_won_and_a_dispute_update_is_a_note(
    gateway: StripeGateway, sandbox: Sandbox
) -> None:
    # given: a dispute opened and lost at the sandbox, which has no inquiries and no dispute updates; Stripe sends
    # both with the same dispute object, so the recorded events stand in for them with their type or status changed
    intent = paid(gateway, amount=700)
    dispute_id = control(sandbox, f"/v1/sandbox/charges/{charge_of(sandbox, intent)}/dispute").json()["id"]
    control(sandbox, f"/v1/sandbox/disputes/{dispute_id}/close", outcome="lost")
    warning = relabelled(
        sandbox, "charge.dispute.closed", dispute_id, as_type="charge.dispute.closed", status="warning_closed"
    )
    updated = relabelled(sandbox, "charge.dispute.created", dispute_id, as_type="charge.dispute.updated")
    # when
    closed = gateway.webhook_notice(payload=warning).dispute
    read = gateway.webhook_notice(payload=updated)
    # then
    assert closed is not None
    assert (closed.status, closed.amount, closed.fee) == (DisputeStatus.WON, 700, 1500)
    assert (read.dispute, read.note) == (None, "a dispute's evidence or metadata changed; its money did not")
