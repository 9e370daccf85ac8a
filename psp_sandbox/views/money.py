"""Money moving after a payment: refunds, transfers and their reversals, disputes (read), and the balance
transactions that book all of it."""

from __future__ import annotations

from typing import Any

from psp_sandbox import inputs, objects, refunds, selectors, transfers
from psp_sandbox.endpoint import Call, stripe_endpoint
from psp_sandbox.errors import InvalidRequest


def _no_expand(expand: list[str]) -> None:
    if expand:
        raise InvalidRequest(f"This property cannot be expanded ({expand[0]}).", param="expand[0]")


def _source_expansion(expand: list[str], *, prefix: str = "") -> bool:
    for index, name in enumerate(expand):
        if name != f"{prefix}source":
            raise InvalidRequest(f"This property cannot be expanded ({name}).", param=f"expand[{index}]")
    return bool(expand)


def refund_create(call: Call) -> tuple[int, dict[str, Any]]:
    data = refunds.refund_create_input(call.params)
    _no_expand(data.expand)
    return 200, objects.refund_object(refunds.refund_create(data=data))


def refund_retrieve(call: Call, refund_id: str) -> tuple[int, dict[str, Any]]:
    _no_expand(inputs.retrieve_input(call.params))
    return 200, objects.refund_object(selectors.refund_get(refund_id))


def refund_list(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.list_input(call.params, filters=frozenset({"payment_intent", "charge"}))
    _no_expand(data.expand)
    found, has_more = selectors.refunds_list(data)
    return 200, objects.list_object(call.request.path, [objects.refund_object(r) for r in found], has_more=has_more)


def transfer_create(call: Call) -> tuple[int, dict[str, Any]]:
    data = transfers.transfer_create_input(call.params)
    _no_expand(data.expand)
    return 200, objects.transfer_object(transfers.transfer_create(data=data))


def transfer_retrieve(call: Call, transfer_id: str) -> tuple[int, dict[str, Any]]:
    _no_expand(inputs.retrieve_input(call.params))
    return 200, objects.transfer_object(selectors.transfer_get(transfer_id))


def transfer_list(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.list_input(call.params, filters=frozenset({"destination", "transfer_group"}))
    _no_expand(data.expand)
    found, has_more = selectors.transfers_list(data)
    return 200, objects.list_object(call.request.path, [objects.transfer_object(t) for t in found], has_more=has_more)


def reversal_create(call: Call, transfer_id: str) -> tuple[int, dict[str, Any]]:
    amount, metadata = transfers.reversal_input(call.params)
    reversal = transfers.transfer_reverse(transfer_id=transfer_id, amount=amount, metadata=metadata)
    return 200, objects.transfer_reversal_object(reversal)


def reversal_list(call: Call, transfer_id: str) -> tuple[int, dict[str, Any]]:
    data = inputs.list_input(call.params)
    found, has_more = selectors.transfer_reversals_list(transfer_id, data)
    rendered = [objects.transfer_reversal_object(r) for r in found]
    return 200, objects.list_object(call.request.path, rendered, has_more=has_more)


def dispute_retrieve(call: Call, dispute_id: str) -> tuple[int, dict[str, Any]]:
    _no_expand(inputs.retrieve_input(call.params))
    return 200, objects.dispute_object(selectors.dispute_get(dispute_id))


def dispute_list(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.list_input(call.params, filters=frozenset({"charge"}))
    found, has_more = selectors.disputes_list(data)
    return 200, objects.list_object(call.request.path, [objects.dispute_object(d) for d in found], has_more=has_more)


def balance_transaction_retrieve(call: Call, txn_id: str) -> tuple[int, dict[str, Any]]:
    expand = _source_expansion(inputs.retrieve_input(call.params))
    txn = selectors.balance_transaction_get(txn_id)
    return 200, objects.balance_transaction_object(txn, source=objects.source_object(txn.source) if expand else None)


def balance_transaction_list(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.list_input(call.params, filters=frozenset({"type", "source", "currency", "payout"}))
    expand = _source_expansion(data.expand, prefix="data.")
    if "payout" in data.filters:
        # Payouts to a bank are not modelled: no balance transaction belongs to one.
        return 200, objects.list_object(call.request.path, [], has_more=False)
    found, has_more = selectors.balance_transactions_list(data)
    rendered = [
        objects.balance_transaction_object(txn, source=objects.source_object(txn.source) if expand else None)
        for txn in found
    ]
    return 200, objects.list_object(call.request.path, rendered, has_more=has_more)


refunds_view = stripe_endpoint({"POST": refund_create, "GET": refund_list})
refund_view = stripe_endpoint({"GET": refund_retrieve})
transfers_view = stripe_endpoint({"POST": transfer_create, "GET": transfer_list})
transfer_view = stripe_endpoint({"GET": transfer_retrieve})
reversals_view = stripe_endpoint({"POST": reversal_create, "GET": reversal_list})
disputes_view = stripe_endpoint({"GET": dispute_list})
dispute_view = stripe_endpoint({"GET": dispute_retrieve})
balance_transactions_view = stripe_endpoint({"GET": balance_transaction_list})
balance_transaction_view = stripe_endpoint({"GET": balance_transaction_retrieve})
