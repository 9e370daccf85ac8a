"""The payments app's models: pay-in orders and their webhooks (orders.py); refunds, disputes and payouts."""

from payments.models.disputes import Dispute, DisputeAllocation, DisputeStatus
from payments.models.orders import (
    CAPTURED_STATUSES,
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
    DeadLetter,
    OrderStatus,
    OrderTransition,
    PaymentEvent,
    PaymentOrder,
    WebhookEvent,
    _new_payment_id,  # noqa: F401 - migration 0001 names it here
)
from payments.models.payouts import OPEN_PAYOUT_STATUSES, Payout, PayoutStatus
from payments.models.refunds import OPEN_REFUND_STATUSES, Refund, RefundStatus
from payments.models.risk import RiskReview, RiskReviewStatus

__all__ = [
    "CAPTURED_STATUSES",
    "FINAL_STATUSES",
    "IN_FLIGHT_STATUSES",
    "OPEN_PAYOUT_STATUSES",
    "OPEN_REFUND_STATUSES",
    "DeadLetter",
    "Dispute",
    "DisputeAllocation",
    "DisputeStatus",
    "OrderStatus",
    "OrderTransition",
    "PaymentEvent",
    "PaymentOrder",
    "Payout",
    "PayoutStatus",
    "Refund",
    "RefundStatus",
    "RiskReview",
    "RiskReviewStatus",
    "WebhookEvent",
]
