"""Payments in the finance console. Read-only: every change to a payment goes through a service, never a form."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from api.readonly_admin import ReadOnlyAdmin, ReadOnlyInline
from payments.models import (
    DeadLetter,
    Dispute,
    DisputeAllocation,
    OrderTransition,
    PaymentEvent,
    PaymentOrder,
    Payout,
    Refund,
    WebhookEvent,
)
from payments.retries import dead_letter_replay


class PaymentOrderInline(ReadOnlyInline):
    model = PaymentOrder
    ordering = ["position"]
    fields = readonly_fields = (
        "payment_order_id",
        "seller",
        "amount",
        "status",
        "psp_reference",
        "failure_code",
        "attempts",
        "psp_token",
    )


class OrderTransitionInline(ReadOnlyInline):
    model = OrderTransition
    fields = readonly_fields = ("created_at", "from_status", "to_status", "transition", "actor", "reason")
    ordering = ["pk"]
    show_change_link = False


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = readonly_fields = (
        "refund_id",
        "amount",
        "currency",
        "status",
        "seller_from_pending",
        "seller_from_available",
        "platform_fee_part",
        "psp_reference",
        "failure_code",
        "created_at",
    )
    ordering = ["pk"]


class DisputeAllocationInline(ReadOnlyInline):
    model = DisputeAllocation
    fields = readonly_fields = (
        "dispute",
        "order",
        "amount",
        "seller_from_pending",
        "seller_from_available",
        "platform_fee_part",
    )
    ordering = ["pk"]


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ["payment_id", "checkout_id", "buyer_id", "client", "created_at"]
    list_filter = ["client"]
    list_select_related = ["client"]
    search_fields = ["=payment_id", "=checkout_id", "=buyer_id", "=orders__payment_order_id"]
    date_hierarchy = "created_at"
    inlines = [PaymentOrderInline]


@admin.register(PaymentOrder)
class PaymentOrderAdmin(ReadOnlyAdmin):
    list_display = ["payment_order_id", "event", "seller", "amount", "status", "failure_code", "created_at"]
    list_filter = ["status", "amount_currency"]
    list_select_related = ["event"]
    search_fields = ["=payment_order_id", "=event__payment_id", "=psp_reference", "=psp_token", "=seller__account"]
    inlines = [OrderTransitionInline, RefundInline, DisputeAllocationInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["refund_id", "order", "amount", "currency", "status", "failure_code", "created_at"]
    list_filter = ["status", "currency"]
    list_select_related = ["order"]
    search_fields = ["=refund_id", "=psp_reference", "=order__payment_order_id"]
    date_hierarchy = "created_at"


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ["psp_dispute_id", "payment_intent", "amount", "currency", "fee", "status", "reason", "opened_at"]
    list_filter = ["status", "currency", "reason"]
    search_fields = ["=psp_dispute_id", "=payment_intent", "=allocations__order__payment_order_id"]
    inlines = [DisputeAllocationInline]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = [
        "payout_id",
        "seller",
        "amount",
        "currency",
        "payout_amount",
        "payout_currency",
        "status",
        "failure_code",
        "created_at",
        "paid_at",
    ]
    list_filter = ["status", "currency", "payout_currency"]
    search_fields = ["=payout_id", "=psp_reference", "=seller__account"]
    date_hierarchy = "created_at"


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """The inbox as it arrived: raw body, how often it was delivered, what processing made of it."""

    list_display = ["event_id", "type", "object_id", "received_at", "deliveries", "processed_at", "attempts", "outcome"]
    list_filter = ["psp", "type", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=event_id", "=object_id"]
    date_hierarchy = "received_at"


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["object_id", "task", "attempts", "first_failed_at", "last_failed_at", "resolved_at", "resolution"]
    list_filter = ["task", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["=object_id"]
    actions = ["replay"]

    @admin.action(description="Replay: send the work again, once")
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        # The service does the work and is idempotent: a closed letter, or a second click, sends nothing again.
        replayed = sum(
            dead_letter_replay(dead_letter_id=letter.pk, actor=f"admin:{request.user.get_username()}")
            for letter in queryset.filter(resolved_at__isnull=True)
        )
        self.message_user(request, f"{replayed} dead letter(s) replayed.", messages.SUCCESS)
