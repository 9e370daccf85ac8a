from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from payments.models.orders import PaymentOrder


class RiskReviewStatus(models.TextChoices):
    PENDING = "PENDING"
    APPROVED = "APPROVED"  # the order is sent to the PSP without asking the risk check again
    REJECTED = "REJECTED"  # the order fails with risk_rejected


class RiskReview(models.Model):
    """An order the risk check held for a person (a "review" verdict): it stays NOT_STARTED, sent nowhere, until a
    finance person decides (payments/risk/reviews.py). One per order."""

    order = models.OneToOneField(PaymentOrder, on_delete=models.PROTECT, related_name="risk_review")
    rule = models.CharField(max_length=200)  # the rule that asked for it, with what it saw
    status = models.CharField(max_length=10, choices=RiskReviewStatus.choices, default=RiskReviewStatus.PENDING)
    created_at = models.DateTimeField(db_default=Now())
    decided_by = models.CharField(max_length=150, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="risk_review_queue_idx")]
        permissions = [("decide_riskreview", "Can approve or reject an order held for risk review")]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.rule} ({self.status})"
