from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django_fsm import FSMField, transition

from payments.ids import new_public_id
from payments.models.fsm import ConcurrentTransitions
from payments.models.orders import PaymentOrder


def _new_refund_id() -> str:
    return new_public_id("rf")


class RefundStatus(models.TextChoices):
    NOT_STARTED = "NOT_STARTED"
    EXECUTING = "EXECUTING"
    PENDING = "PENDING"  # the PSP accepted it and finishes it later; its webhook or a lookup ends it
    UNKNOWN = "UNKNOWN"  # the request left and no answer came; settled by a retry with the same key or a lookup
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# Refunds still on their way to the PSP or waiting for its answer.
OPEN_REFUND_STATUSES = frozenset(
    {RefundStatus.NOT_STARTED, RefundStatus.EXECUTING, RefundStatus.PENDING, RefundStatus.UNKNOWN}
)


class Refund(ConcurrentTransitions, models.Model):
    """Money given back to the buyer of one payment order, all of it or a part (DESIGN.md "Refund").

    Booked when it is created: the ledger takes the amount out of PSP clearing and the seller's funds (and the
    platform's fee, as PLATFORM_FEE_ON_REFUND says) at once, so no payout can pay out money promised back to a
    buyer. A refund the PSP refuses, or that fails later, is booked back (payments/refunds.py). The split is kept
    here as it was booked, so that booking it back returns exactly what was taken, to where it belongs now.
    """

    refund_id = models.CharField(max_length=40, unique=True, default=_new_refund_id, editable=False)
    order = models.ForeignKey(PaymentOrder, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()  # minor units of the order's currency
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=100, blank=True, default="", db_default="")
    # Where the money came from: the seller's pending funds (the order was not yet released), their available
    # funds (it was; may take them below zero), and the platform's fee.
    seller_from_pending = models.BigIntegerField()
    seller_from_available = models.BigIntegerField()
    platform_fee_part = models.BigIntegerField()
    status = FSMField(default=RefundStatus.NOT_STARTED, choices=RefundStatus.choices, protected=True)
    psp_reference = models.CharField(max_length=255, blank=True, default="", db_default="")  # re_…
    failure_code = models.CharField(max_length=100, blank=True, default="", db_default="")
    failure_reason = models.TextField(blank=True, default="", db_default="")
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    actor = models.CharField(max_length=100)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(seller_from_pending__gte=0, seller_from_available__gte=0, platform_fee_part__gte=0),
                name="refund_parts_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    amount=models.F("seller_from_pending")
                    + models.F("seller_from_available")
                    + models.F("platform_fee_part")
                ),
                name="refund_parts_add_up",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="refund_status_idx"),
            models.Index(fields=["created_at"], name="refund_created_idx"),  # the metrics' window
            # Found by the PSP's id (the console's search); partial: a refund has none until it is sent.
            models.Index(
                fields=["psp_reference"], condition=~models.Q(psp_reference=""), name="refund_psp_reference_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.refund_id

    @property
    def seller_part(self) -> int:
        return self.seller_from_pending + self.seller_from_available

    @transition(field=status, source=RefundStatus.NOT_STARTED, target=RefundStatus.EXECUTING)
    def start_execution(self) -> None:
        """Committed before the PSP call, so a crash after it is visible to the recovery sweep."""

    @transition(field=status, source=RefundStatus.EXECUTING, target=RefundStatus.UNKNOWN)
    def mark_unknown(self) -> None:
        pass

    @transition(field=status, source=[RefundStatus.EXECUTING, RefundStatus.UNKNOWN], target=RefundStatus.PENDING)
    def mark_pending(self) -> None:
        pass

    @transition(
        field=status,
        source=[RefundStatus.EXECUTING, RefundStatus.UNKNOWN, RefundStatus.PENDING],
        target=RefundStatus.SUCCEEDED,
    )
    def mark_succeeded(self) -> None:
        pass

    # From SUCCEEDED too: a card refund may fail days after the PSP first reported it done.
    @transition(
        field=status,
        source=[
            RefundStatus.NOT_STARTED,
            RefundStatus.EXECUTING,
            RefundStatus.UNKNOWN,
            RefundStatus.PENDING,
            RefundStatus.SUCCEEDED,
        ],
        target=RefundStatus.FAILED,
    )
    def mark_failed(self, *, failure_code: str, reason: str) -> None:
        self.failure_code = failure_code
        self.failure_reason = reason
