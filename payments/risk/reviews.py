"""Orders the risk check held for review: a finance person approves (the order is sent, without asking the risk
check again) or rejects (the order fails with risk_rejected). Each decision checks the person's permission and is
recorded in the audit trail, in the same transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from payments.locks import order_lock
from payments.models import OrderStatus, PaymentOrder, RiskReview, RiskReviewStatus
from payments.risk import risk_rejection_record
from payments.services import executions_enqueue


class ReviewDecided(Exception):
    """Someone decided this review first."""


def risk_review_hold(*, order: PaymentOrder, rule: str) -> RiskReview:
    """Hold the order (its row lock held by the caller) for a person. Safe to call again: one review per order."""
    review, _ = RiskReview.objects.get_or_create(order=order, defaults={"rule": rule[:200]})
    return review


def _decide(review_id: int, user: Any, note: str, approve: bool) -> RiskReview:
    if not user.is_active or not user.has_perm("payments.decide_riskreview"):
        raise PermissionDenied(f"{user} may not decide risk reviews")
    if not note.strip():
        raise ValueError("a decision needs a note saying why")
    actor = str(user.get_username())
    order_id = RiskReview.objects.values_list("order__payment_order_id", flat=True).get(pk=review_id)
    with transaction.atomic():
        order = order_lock(payment_order_id=order_id)
        review = RiskReview.objects.select_for_update().get(pk=review_id)
        if review.status != RiskReviewStatus.PENDING:
            raise ReviewDecided(f"review #{review_id} is {review.status}")
        review.status = RiskReviewStatus.APPROVED if approve else RiskReviewStatus.REJECTED
        review.decided_by, review.decided_at, review.note = actor, timezone.now(), note.strip()
        review.save()
        if approve:
            executions_enqueue([order_id])
        elif order.status == OrderStatus.NOT_STARTED:
            order.mark_failed(
                actor=f"risk review:{actor}", reason=f"{review.rule}: {note}", failure_code="risk_rejected"
            )
            order.save()
            risk_rejection_record(order, review.rule, actor=f"risk review:{actor}")
        audit_record(
            actor=actor,
            action="risk_review.approve" if approve else "risk_review.reject",
            object_type="payment_order",
            object_id=order_id,
            reason=note,
            details={"rule": review.rule},
        )
    return review


def risk_review_approve(*, review_id: int, user: Any, note: str) -> RiskReview:
    return _decide(review_id, user, note, approve=True)


def risk_review_reject(*, review_id: int, user: Any, note: str) -> RiskReview:
    return _decide(review_id, user, note, approve=False)
