from __future__ import annotations

from api.errors import Conflict, InvalidInput, NotFound, UpstreamRefused, UpstreamUnavailable


class PaymentNotFound(NotFound):
    default_message = "No payment with this id."


class PaymentOrderNotFound(NotFound):
    default_message = "No payment order with this id."


class PaymentOrderIdTaken(Conflict):
    """``payment_order_id`` is the PSP's idempotency key, so it may name one order, ever."""

    default_code = "payment_order_id_taken"

    def __init__(self, *, payment_order_id: str, index: int, payment_id: str | None) -> None:
        if payment_id is not None:
            message = f"payment_order_id {payment_order_id!r} already belongs to payment {payment_id}."
        else:
            # Another client's order: say it is taken without telling whose it is.
            message = f"payment_order_id {payment_order_id!r} is already in use."
        super().__init__(message, field=f"payment_orders[{index}].payment_order_id")
        self.payment_id = payment_id


class SellerNotFound(NotFound):
    default_message = "No seller with this account among this client's payments."


class PspUnavailable(UpstreamUnavailable):
    default_code = "psp_unavailable"
    default_message = "The payment service provider did not answer; nothing was stored. Retry with the same key."


class PspRefused(UpstreamRefused):
    default_code = "psp_refused"
    default_message = "The payment service provider refused the request; nothing was stored."


class MixedCurrencies(InvalidInput):
    """A hosted page charges the buyer one amount, in one currency."""

    default_code = "checkout_mixed_currencies"
    default_message = "Every order of a checkout must be in the same currency."


class OrderNotCaptured(Conflict):
    default_code = "order_not_captured"
    default_message = "The payment order was not captured."


class OrderDisputed(Conflict):
    default_code = "order_disputed"
    default_message = "The payment order's charge is disputed; it cannot be refunded."


class RefundExceedsCaptured(InvalidInput):
    default_code = "refund_exceeds_captured"
    default_message = "The refund is more than what is left to refund of the order."


class RefundNotFound(NotFound):
    default_message = "No refund with this id."


class PayoutNotFound(NotFound):
    default_message = "No payout with this id."


class NothingToPayOut(Conflict):
    default_code = "nothing_to_pay_out"
    default_message = "No balance of this seller is above the payout minimum."


class PayoutAccountMissing(Conflict):
    default_code = "payout_account_missing"
    default_message = "The seller has no payout account; set payout_account first."
