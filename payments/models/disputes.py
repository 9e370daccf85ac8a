from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from payments.models.orders import PaymentOrder


class DisputeStatus(models.TextChoices):
    OPEN = "OPEN"  # the PSP withdrew the amount and its fee; the seller's part is held
    WON = "WON"  # given back: the hold is released
    LOST = "LOST"  # kept by the buyer's bank: the held funds and the fee are lost


class Dispute(models.Model):
    """A buyer's chargeback of one PSP charge, as the PSP reported it (``charge.dispute.*`` webhooks).

    A hosted-page charge pays several orders, so a dispute is split over the orders of its charge
    (DisputeAllocation); each allocation holds its seller's part. Moves only OPEN → WON | LOST, in
    payments/disputes.py, under the row lock.
    """

    psp_dispute_id = models.CharField(max_length=255, unique=True)  # dp_…
    payment_intent = models.CharField(max_length=255, db_index=True)  # pi_…
    amount = models.BigIntegerField()  # minor units
    currency = models.CharField(max_length=3)
    fee = models.BigIntegerField()  # the PSP's dispute fee, minor units
    reason = models.CharField(max_length=100, blank=True, default="", db_default="")
    status = models.CharField(max_length=10, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    opened_at = models.DateTimeField(db_default=Now())
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0, fee__gte=0), name="dispute_amounts_valid"),
            models.CheckConstraint(condition=models.Q(status__in=DisputeStatus.values), name="dispute_status_known"),
        ]

    def __str__(self) -> str:
        return self.psp_dispute_id


class DisputeAllocation(models.Model):
    """The part of a dispute that falls on one order, and where its seller's part was held from."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="allocations")
    order = models.ForeignKey(PaymentOrder, on_delete=models.PROTECT, related_name="dispute_allocations")
    amount = models.BigIntegerField()  # minor units of the dispute's currency
    seller_from_pending = models.BigIntegerField()
    seller_from_available = models.BigIntegerField()
    platform_fee_part = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dispute", "order"], name="dispute_allocation_unique"),
            models.CheckConstraint(
                condition=models.Q(
                    amount=models.F("seller_from_pending")
                    + models.F("seller_from_available")
                    + models.F("platform_fee_part")
                ),
                name="dispute_allocation_parts_add_up",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dispute_id} on {self.order_id}: {self.amount}"

    @property
    def seller_part(self) -> int:
        return self.seller_from_pending + self.seller_from_available
