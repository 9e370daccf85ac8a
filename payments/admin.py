"""Payments in the finance console. Read-only: every change to a payment goes through a service, never a form."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from api.admin_actions import with_form
from api.readonly_admin import IndexedValuesFilter, ReadOnlyAdmin, ReadOnlyInline, one_id
from audit.admin import audit_html
from audit.services import audit_record
from payments.errors import NothingToPayOut, OrderNotCaptured, PayoutAccountMissing
from payments.models import (
    DeadLetter,
    Dispute,
    DisputeAllocation,
    OrderTransition,
    PaymentEvent,
    PaymentOrder,
    Payout,
    Refund,
    RiskReview,
    RiskReviewStatus,
    WebhookEvent,
)
from payments.payouts import payout_create
from payments.releases import order_funds_release
from payments.retries import dead_letter_replay
from payments.risk.reviews import ReviewDecided, risk_review_approve, risk_review_reject
from payments.selectors import orders_overdue
from wallets.admin import WalletAdmin
from wallets.models import Wallet


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
    # No date_hierarchy on the big tables: its year and month links are a SELECT DISTINCT date_trunc(...) over every
    # row, on every page (0.4 s here, 1.6 s over the webhook inbox).
    list_filter = ["client"]
    list_select_related = ["client"]
    search_fields = ["payment_id__exact", "checkout_id__exact", "buyer_id__exact", "orders__payment_order_id__exact"]
    inlines = [PaymentOrderInline]


class OverdueFilter(admin.SimpleListFilter):
    """The recovery sweep's in-flight alert, as a filter with its count: what the on-call engineer was paged for."""

    title = "in flight"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        count = orders_overdue(now=timezone.now()).count()
        minutes = settings.ORDER_IN_FLIGHT_ALERT_SECONDS // 60
        return [("yes", f"past the alert threshold, {minutes} min ({count})")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[PaymentOrder]) -> QuerySet[PaymentOrder]:
        if self.value() == "yes":
            return queryset & orders_overdue(now=timezone.now())
        return queryset


@admin.register(PaymentOrder)
class PaymentOrderAdmin(ReadOnlyAdmin):
    list_display = ["payment_order_id", "event", "seller", "amount", "status", "failure_code", "created_at"]
    list_filter = [OverdueFilter, "status", "amount_currency"]
    list_select_related = ["event", "seller"]
    # Exact matches (ids are case-sensitive; "=" would mean iexact, UPPER() on the column, which no index serves),
    # each on an index of this table; the payment's id through a subquery (see get_search_results).
    search_fields = ["payment_order_id__exact", "psp_reference__exact", "psp_token__exact", "seller__exact"]
    search_help_text = "An order's id, its payment's id, the PSP's pi_ or cs_, or a seller account."
    inlines = [OrderTransitionInline, RefundInline, DisputeAllocationInline]
    actions = ["release"]
    readonly_fields = ["audit_trail"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PaymentOrder], search_term: str
    ) -> tuple[QuerySet[PaymentOrder], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            found = found | queryset.filter(
                event_id=one_id(PaymentEvent.objects.filter(payment_id=search_term.strip()))
            )
        return found, duplicates

    def has_release_funds_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.release_funds")

    @admin.display(description="audit trail")
    def audit_trail(self, order: PaymentOrder) -> str:
        return audit_html("payment_order", order.payment_order_id)

    @admin.action(description="Release the seller's funds (delivery confirmed)", permissions=["release_funds"])
    def release(self, request: HttpRequest, queryset: QuerySet[PaymentOrder]) -> HttpResponse | None:
        def apply(order: Any, data: dict[str, Any]) -> str:
            with transaction.atomic():
                released = order_funds_release(
                    payment_order_id=order.payment_order_id, actor=f"admin:{request.user.get_username()}"
                )
                audit_record(
                    actor=request.user.get_username(),
                    action="order.release",
                    object_type="payment_order",
                    object_id=order.payment_order_id,
                    reason=data["note"],
                )
            return f"{released}: funds released"

        return with_form(
            self,
            request,
            queryset.filter(released_at__isnull=True),
            action="release",
            title="Release funds",
            explanation="Each order's seller funds move from pending to available, once.",
            submit="Release",
            apply=apply,
            refusals=(OrderNotCaptured,),
        )


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["refund_id", "order", "amount", "currency", "status", "failure_code", "created_at"]
    list_filter = ["status", "currency"]
    list_select_related = ["order"]
    search_fields = ["refund_id__exact", "psp_reference__exact"]
    search_help_text = "A refund's id, the PSP's re_, or the refunded order's id."
    date_hierarchy = "created_at"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Refund], search_term: str
    ) -> tuple[QuerySet[Refund], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            order = PaymentOrder.objects.filter(payment_order_id=search_term.strip())
            found = found | queryset.filter(order_id=one_id(order))
        return found, duplicates


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ["psp_dispute_id", "payment_intent", "amount", "currency", "fee", "status", "reason", "opened_at"]
    list_filter = ["status", "currency", "reason"]
    search_fields = ["psp_dispute_id__exact", "payment_intent__exact", "allocations__order__payment_order_id__exact"]
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
    list_filter = [
        "status",
        ("currency", IndexedValuesFilter),
        ("payout_currency", IndexedValuesFilter),
        ("created_at", admin.DateFieldListFilter),  # on its index, instead of date_hierarchy's DISTINCT
    ]
    search_fields = ["payout_id__exact", "psp_reference__exact", "seller__exact"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """The inbox as it arrived: raw body, how often it was delivered, what processing made of it."""

    list_display = ["event_id", "type", "object_id", "received_at", "deliveries", "processed_at", "attempts", "outcome"]
    list_filter = [
        ("psp", IndexedValuesFilter),
        ("type", IndexedValuesFilter),
        ("processed_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["event_id__exact", "object_id__exact"]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["object_id", "task", "attempts", "first_failed_at", "last_failed_at", "resolved_at", "resolution"]
    list_filter = ["task", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["object_id__exact"]
    actions = ["replay"]
    readonly_fields = ["audit_trail"]

    def has_replay_deadletter_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.replay_deadletter")

    @admin.display(description="audit trail")
    def audit_trail(self, letter: DeadLetter) -> str:
        return audit_html("dead_letter", letter.pk)

    @admin.action(description="Replay: send the work again, once", permissions=["replay_deadletter"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> HttpResponse | None:
        actor = f"admin:{request.user.get_username()}"

        def apply(letter: Any, data: dict[str, Any]) -> str:
            # The service does the work and is idempotent: a closed letter, or a second click, sends nothing again.
            with transaction.atomic():
                replayed = dead_letter_replay(dead_letter_id=letter.pk, actor=actor)
                if replayed:
                    audit_record(
                        actor=request.user.get_username(),
                        action="dead_letter.replay",
                        object_type="dead_letter",
                        object_id=str(letter.pk),
                        reason=data["note"],
                    )
            return f"{letter}: {'replayed' if replayed else 'already closed, nothing sent'}"

        return with_form(
            self,
            request,
            queryset.filter(resolved_at__isnull=True),
            action="replay",
            title="Replay dead letters",
            explanation="Each is sent again once; the letter is closed as replayed.",
            submit="Replay",
            apply=apply,
        )


@admin.register(RiskReview)
class RiskReviewAdmin(ReadOnlyAdmin):
    """Orders the risk check held: a finance operator sends or fails each, with a note."""

    list_display = ["order", "rule", "status", "created_at", "decided_by", "decided_at"]
    list_filter = ["status"]
    list_select_related = ["order"]
    search_fields = ["=order__payment_order_id"]
    actions = ["approve", "reject"]

    def has_decide_riskreview_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.decide_riskreview")

    def _decide(self, request: HttpRequest, queryset: QuerySet[RiskReview], approve: bool) -> HttpResponse | None:
        decide = risk_review_approve if approve else risk_review_reject
        return with_form(
            self,
            request,
            queryset.filter(status=RiskReviewStatus.PENDING),
            action="approve" if approve else "reject",
            title="Send the held orders" if approve else "Fail the held orders",
            explanation="Each order is sent to the PSP now." if approve else "Each order fails with risk_rejected.",
            submit="Approve" if approve else "Reject",
            apply=lambda review, data: str(decide(review_id=review.pk, user=request.user, note=data["note"])),
            refusals=(ReviewDecided,),
        )

    @admin.action(description="Approve: send the order", permissions=["decide_riskreview"])
    def approve(self, request: HttpRequest, queryset: QuerySet[RiskReview]) -> HttpResponse | None:
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject: fail the order", permissions=["decide_riskreview"])
    def reject(self, request: HttpRequest, queryset: QuerySet[RiskReview]) -> HttpResponse | None:
        return self._decide(request, queryset, approve=False)


class WalletPayoutAdmin(WalletAdmin):
    """The wallet list, with the operator's "pay out now" (payouts belong to payments, which builds on wallets)."""

    actions = ["pay_out"]

    def has_trigger_payout_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.trigger_payout")

    @admin.action(description="Pay out the available balance now", permissions=["trigger_payout"])
    def pay_out(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> HttpResponse | None:
        def apply(wallet: Any, data: dict[str, Any]) -> str:
            with transaction.atomic():
                payout = payout_create(
                    seller_account=wallet.seller_id,
                    currency=wallet.currency,
                    actor=f"admin:{request.user.get_username()}",
                )
                audit_record(
                    actor=request.user.get_username(),
                    action="payout.create",
                    object_type="payout",
                    object_id=payout.payout_id,
                    reason=data["note"],
                    details={"seller": wallet.seller_id, "currency": wallet.currency, "amount": payout.amount},
                )
            return f"payout {payout.payout_id} of {payout.amount} {payout.currency} (minor units) created"

        return with_form(
            self,
            request,
            queryset,
            action="pay_out",
            title="Pay out now",
            explanation="One payout per wallet of its whole available balance, if above the minimum.",
            submit="Pay out",
            apply=apply,
            refusals=(NothingToPayOut, PayoutAccountMissing),
        )


admin.site.unregister(Wallet)
admin.site.register(Wallet, WalletPayoutAdmin)
