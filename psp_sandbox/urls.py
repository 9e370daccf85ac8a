"""The sandbox PSP's URLconf: Stripe's API v1 paths, the sandbox's control calls and pages, and Stripe's 404 for
everything else."""

from __future__ import annotations

from django.urls import path, re_path

from psp_sandbox.endpoint import unrecognized_url
from psp_sandbox.views import checkout, control, events, intents, money, pages, reports

urlpatterns = [
    path("v1/payment_intents", intents.payment_intents, name="psp_sandbox_payment_intents"),
    # Before the retrieve route, which would otherwise take "search" for an id.
    path("v1/payment_intents/search", intents.payment_intents_search, name="psp_sandbox_payment_intents_search"),
    path("v1/payment_intents/<str:intent_id>", intents.payment_intent, name="psp_sandbox_payment_intent"),
    path("v1/payment_intents/<str:intent_id>/confirm", intents.payment_intent_confirm_view),
    path("v1/payment_intents/<str:intent_id>/cancel", intents.payment_intent_cancel_view),
    path("v1/checkout/sessions", checkout.sessions),
    path("v1/checkout/sessions/<str:session_id>", checkout.session),
    path("v1/checkout/sessions/<str:session_id>/expire", checkout.expire),
    path("v1/checkout/sessions/<str:session_id>/line_items", checkout.line_items),
    path("v1/refunds", money.refunds_view),
    path("v1/refunds/<str:refund_id>", money.refund_view),
    path("v1/transfers", money.transfers_view),
    path("v1/transfers/<str:transfer_id>", money.transfer_view),
    path("v1/transfers/<str:transfer_id>/reversals", money.reversals_view),
    path("v1/disputes", money.disputes_view),
    path("v1/disputes/<str:dispute_id>", money.dispute_view),
    path("v1/balance_transactions", money.balance_transactions_view),
    path("v1/balance_transactions/<str:txn_id>", money.balance_transaction_view),
    path("v1/reporting/report_runs", reports.runs),
    path("v1/reporting/report_runs/<str:run_id>", reports.run),
    path("v1/files/<str:file_id>", reports.file),
    path("v1/files/<str:file_id>/contents", reports.file_contents),
    path("v1/events", events.events),
    path("v1/events/<str:event_id>", events.event),
    # The sandbox's own: control calls (API key) and pages (a buyer's browser).
    path("v1/sandbox/config", control.sandbox_config),
    path("v1/sandbox/payment_intents/<str:intent_id>/authenticate", control.authenticate),
    path("v1/sandbox/settlement_report", reports.settlement_report),
    path("v1/sandbox/settlement_report/alterations", reports.settlement_report),
    path("v1/sandbox/charges/<str:charge_id>/dispute", control.dispute_open_view),
    path("v1/sandbox/disputes/<str:dispute_id>/close", control.dispute_close_view),
    path("v1/sandbox/authenticate/<str:intent_id>", pages.authenticate, name="psp_sandbox_authenticate"),
    path("c/pay/<str:session_id>", pages.checkout_page, name="psp_sandbox_checkout_page"),
    re_path(r"^", unrecognized_url),
]

handler500 = "psp_sandbox.endpoint.server_error"
