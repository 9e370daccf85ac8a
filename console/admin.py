"""The payment page of the finance console: one page with a payment's whole story, found by any of its ids."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from console.selectors import payment_search, payment_story
from payments.admin import PaymentEventAdmin
from payments.models import PaymentEvent


class PaymentStoryAdmin(PaymentEventAdmin):
    change_form_template = "admin/console/payment_story.html"
    search_help_text = (
        "Any id: payment, checkout, payment order, refund, buyer, seller, or the PSP's pi_, cs_, re_, dp_, txn_."
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PaymentEvent], search_term: str
    ) -> tuple[QuerySet[PaymentEvent], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset & payment_search(search_term), False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {})}
        if object_id.isdigit() and PaymentEvent.objects.filter(pk=int(object_id)).exists():
            context["story"] = payment_story(payment_pk=int(object_id))
        return super().change_view(request, object_id, form_url, extra_context=context)


admin.site.unregister(PaymentEvent)
admin.site.register(PaymentEvent, PaymentStoryAdmin)
