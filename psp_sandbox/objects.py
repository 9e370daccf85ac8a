"""The sandbox's rows rendered as Stripe's API objects (the fields stripe-python and our adapter read, in Stripe's
names and types: unix timestamps, minor units, ``null`` where Stripe has nothing to say)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from psp_sandbox.errors import InvalidRequest
from psp_sandbox.models import (
    BalanceTransaction,
    Charge,
    CheckoutSession,
    Dispute,
    Event,
    File,
    PaymentIntent,
    Refund,
    ReportRun,
    Transfer,
    TransferReversal,
)

# What ``expand[]`` may name on a PaymentIntent: enough to read the fee of a payment in one call.
EXPANDABLE = frozenset({"latest_charge", "latest_charge.balance_transaction"})


def expansions(requested: list[str] | None, *, prefix: str = "") -> frozenset[str]:
    wanted = set()
    for index, name in enumerate(requested or []):
        field = name[len(prefix) :] if name.startswith(prefix) else None
        if field is None or field not in EXPANDABLE:
            raise InvalidRequest(f"This property cannot be expanded ({name}).", param=f"expand[{index}]")
        wanted.add(field)
        if "." in field:
            wanted.add(field.split(".", 1)[0])
    return frozenset(wanted)


def unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def payment_intent_object(
    intent: PaymentIntent, *, latest_charge: Charge | None = None, expand: Collection[str] = ()
) -> dict[str, Any]:
    charge_field: Any = None
    if latest_charge is not None:
        charge_field = (
            charge_object(latest_charge, expand_balance_transaction="latest_charge.balance_transaction" in expand)
            if "latest_charge" in expand
            else latest_charge.id
        )
    succeeded = intent.status == PaymentIntent.Status.SUCCEEDED
    return {
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": 0,
        "amount_received": intent.amount if succeeded else 0,
        "application": None,
        "application_fee_amount": None,
        "canceled_at": unix(intent.canceled_at),
        "cancellation_reason": intent.cancellation_reason or None,
        "capture_method": "automatic",
        "client_secret": intent.client_secret,
        "confirmation_method": "automatic",
        "created": unix(intent.created),
        "currency": intent.currency,
        "customer": None,
        "description": intent.description or None,
        "last_payment_error": intent.last_payment_error,
        "latest_charge": charge_field,
        "livemode": False,
        "metadata": intent.metadata,
        "next_action": intent.next_action,
        "on_behalf_of": None,
        "payment_method": intent.payment_method or None,
        "payment_method_types": intent.payment_method_types,
        "receipt_email": None,
        "status": intent.status,
        "transfer_data": None,
        "transfer_group": None,
    }


def charge_object(charge: Charge, *, expand_balance_transaction: bool = False) -> dict[str, Any]:
    txn = charge.balance_transaction
    succeeded = charge.status == Charge.Status.SUCCEEDED
    return {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount if succeeded else 0,
        "amount_refunded": charge.amount_refunded,
        "balance_transaction": (
            None if txn is None else balance_transaction_object(txn) if expand_balance_transaction else txn.id
        ),
        "captured": succeeded,
        "created": unix(charge.created),
        "currency": charge.currency,
        "disputed": charge.disputed,
        "failure_code": charge.failure_code or None,
        "failure_message": charge.failure_message or None,
        "livemode": False,
        "metadata": charge.metadata,
        "outcome": charge.outcome,
        "paid": succeeded,
        "payment_intent": charge.payment_intent_id,
        "payment_method": charge.payment_method,
        "payment_method_details": {
            "type": "card",
            "card": {"brand": charge.card_brand, "last4": charge.card_last4, "country": charge.card_country},
        },
        "refunded": charge.amount_refunded == charge.amount,
        "status": charge.status,
    }


def balance_transaction_object(txn: BalanceTransaction, *, source: dict[str, Any] | None = None) -> dict[str, Any]:
    fee_details = []
    if txn.fee:
        description = "Stripe processing fees" if txn.type == "charge" else "Dispute fee"
        fee_details = [
            {
                "amount": txn.fee,
                "application": None,
                "currency": txn.currency,
                "description": description,
                "type": "stripe_fee",
            }
        ]
    return {
        "id": txn.id,
        "object": "balance_transaction",
        "amount": txn.amount,
        "available_on": unix(txn.available_on),
        "created": unix(txn.created),
        "currency": txn.currency,
        "description": txn.description or None,
        "exchange_rate": None,
        "fee": txn.fee,
        "fee_details": fee_details,
        "net": txn.net,
        "reporting_category": txn.reporting_category,
        "source": source if source is not None else txn.source,
        "status": txn.status,
        "type": txn.type,
    }


def search_result(path: str, data: list[dict[str, Any]], *, next_page: str | None) -> dict[str, Any]:
    return {
        "object": "search_result",
        "url": path,
        "has_more": next_page is not None,
        "data": data,
        "next_page": next_page,
    }


def list_object(url: str, data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def event_object(event: Event, *, pending_webhooks: int | None = None) -> dict[str, Any]:
    pending = pending_webhooks if pending_webhooks is not None else getattr(event, "pending", 0)
    return {
        "id": event.id,
        "object": "event",
        "api_version": event.api_version,
        "created": unix(event.created),
        "data": event.data,
        "livemode": False,
        "pending_webhooks": pending,
        "request": {"id": event.request_id or None, "idempotency_key": event.idempotency_key or None},
        "type": event.type,
    }


# What ``expand[]`` may name on a Checkout Session.
SESSION_EXPANDABLE = frozenset({"payment_intent", "line_items"})


def checkout_session_object(session: CheckoutSession, *, expand: Collection[str] = ()) -> dict[str, Any]:
    intent_field: Any = session.payment_intent_id
    if "payment_intent" in expand and session.payment_intent is not None:
        intent_field = payment_intent_object(session.payment_intent)
    body: dict[str, Any] = {
        "id": session.id,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": session.amount_subtotal,
        "amount_total": session.amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": session.cancel_url or None,
        "client_reference_id": session.client_reference_id or None,
        "client_secret": None,
        "created": unix(session.created),
        "currency": session.currency,
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": _customer_details(session),
        "customer_email": session.customer_email or None,
        "expires_at": unix(session.expires_at),
        "livemode": False,
        "locale": None,
        "metadata": session.metadata,
        "mode": "payment",
        "payment_intent": intent_field,
        "payment_link": None,
        "payment_method_types": ["card"],
        "payment_status": session.payment_status,
        "status": session.status,
        "submit_type": None,
        "success_url": session.success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        # Stripe hands out the page's URL only while the session can still be paid.
        "url": session.url if session.status == CheckoutSession.Status.OPEN else None,
    }
    if "line_items" in expand:
        body["line_items"] = list_object(
            f"/v1/checkout/sessions/{session.id}/line_items", line_item_objects(session), has_more=False
        )
    return body


def line_item_objects(session: CheckoutSession) -> list[dict[str, Any]]:
    return [
        {
            "id": item["id"],
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": item["amount"],
            "amount_tax": 0,
            "amount_total": item["amount"],
            "currency": session.currency,
            "description": item["name"],
            "price": {
                "id": item["price"],
                "object": "price",
                "active": False,
                "currency": session.currency,
                "product": item["product"],
                "type": "one_time",
                "unit_amount": item["unit_amount"],
            },
            "quantity": item["quantity"],
        }
        for item in session.line_items
    ]


def _customer_details(session: CheckoutSession) -> dict[str, Any] | None:
    details = session.customer_details
    if details is None:
        return None
    return {
        "address": None,
        "email": details.get("email") or session.customer_email or None,
        "name": details.get("name") or None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def refund_object(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": refund.balance_transaction_id,
        "charge": refund.charge_id,
        "created": unix(refund.created),
        "currency": refund.currency,
        "description": None,
        "failure_balance_transaction": refund.failure_balance_transaction_id,
        "failure_reason": refund.failure_reason or None,
        "metadata": refund.metadata,
        "payment_intent": refund.payment_intent_id,
        "reason": refund.reason or None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": refund.status,
        "transfer_reversal": None,
    }


def transfer_object(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "object": "transfer",
        "amount": transfer.amount,
        "amount_reversed": transfer.amount_reversed,
        "balance_transaction": transfer.balance_transaction_id,
        "created": unix(transfer.created),
        "currency": transfer.currency,
        "description": transfer.description or None,
        "destination": transfer.destination,
        "destination_payment": transfer.destination_payment,
        "livemode": False,
        "metadata": transfer.metadata,
        "reversals": {
            "object": "list",
            "data": [transfer_reversal_object(r) for r in transfer.reversals.order_by("-created", "-id")[:10]],
            "has_more": transfer.reversals.count() > 10,
            "url": f"/v1/transfers/{transfer.id}/reversals",
        },
        "reversed": transfer.amount_reversed == transfer.amount,
        "source_transaction": None,
        "source_type": "card",
        "transfer_group": transfer.transfer_group or None,
    }


def transfer_reversal_object(reversal: TransferReversal) -> dict[str, Any]:
    return {
        "id": reversal.id,
        "object": "transfer_reversal",
        "amount": reversal.amount,
        "balance_transaction": reversal.balance_transaction_id,
        "created": unix(reversal.created),
        "currency": reversal.currency,
        "destination_payment_refund": None,
        "metadata": reversal.metadata,
        "source_refund": None,
        "transfer": reversal.transfer_id,
    }


def dispute_object(dispute: Dispute) -> dict[str, Any]:
    txns = [dispute.withdrawal] + ([dispute.reinstatement] if dispute.reinstatement is not None else [])
    return {
        "id": dispute.id,
        "object": "dispute",
        "amount": dispute.amount,
        "balance_transactions": [balance_transaction_object(txn) for txn in txns],
        "charge": dispute.charge_id,
        "created": unix(dispute.created),
        "currency": dispute.currency,
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": dispute.charge.payment_intent_id,
        "reason": dispute.reason,
        "status": dispute.status,
    }


def source_object(source_id: str) -> dict[str, Any] | None:
    """A balance transaction's ``source`` expanded: the charge, refund, transfer, reversal or dispute it books."""
    prefix = source_id.split("_", 1)[0]
    if prefix == "ch":
        charge = Charge.objects.filter(pk=source_id).first()
        return charge_object(charge) if charge is not None else None
    if prefix == "re":
        refund = Refund.objects.filter(pk=source_id).first()
        return refund_object(refund) if refund is not None else None
    if prefix == "tr":
        transfer = Transfer.objects.filter(pk=source_id).first()
        return transfer_object(transfer) if transfer is not None else None
    if prefix == "trr":
        reversal = TransferReversal.objects.filter(pk=source_id).first()
        return transfer_reversal_object(reversal) if reversal is not None else None
    if prefix == "dp":
        dispute = Dispute.objects.select_related("withdrawal", "reinstatement", "charge").filter(pk=source_id).first()
        return dispute_object(dispute) if dispute is not None else None
    return None


def file_object(file: File, *, base_url: str) -> dict[str, Any]:
    return {
        "id": file.id,
        "object": "file",
        "created": unix(file.created),
        "expires_at": unix(file.expires_at),
        "filename": file.filename,
        "links": {"object": "list", "data": [], "has_more": False, "url": f"/v1/file_links?file={file.id}"},
        "purpose": file.purpose,
        "size": file.size,
        "title": file.title,
        "type": "csv",
        # Stripe serves contents from files.stripe.com; the sandbox from its one address, under the same path.
        "url": f"{base_url}/v1/files/{file.id}/contents",
    }


def report_run_object(run: ReportRun, *, base_url: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "object": "reporting.report_run",
        "created": unix(run.created),
        "error": None,
        "livemode": False,
        "parameters": run.parameters,
        "report_type": run.report_type,
        "result": file_object(run.result, base_url=base_url),
        "status": run.status,
        "succeeded_at": unix(run.succeeded_at),
        # Not Stripe's: what the report faults changed in the result (README, "Fault injection").
        "sandbox_alterations": run.alterations,
    }
