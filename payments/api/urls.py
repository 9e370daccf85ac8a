from __future__ import annotations

from django.urls import path

from payments.api import money_out, views, webhooks

urlpatterns = [
    path("payments", views.PaymentCreateApi.as_view(), name="payment-create"),
    path("checkouts", views.CheckoutCreateApi.as_view(), name="checkout-create"),
    path("payments/<str:payment_id>", views.PaymentDetailApi.as_view(), name="payment-detail"),
    path("payment-orders/<str:payment_order_id>", views.PaymentOrderDetailApi.as_view(), name="payment-order-detail"),
    path("webhooks/stripe", webhooks.stripe_webhook, name="webhook-stripe"),
    path("sellers/<str:seller_account>/balance", views.SellerBalanceApi.as_view(), name="seller-balance"),
    path("payment-orders/<str:payment_order_id>/release", money_out.OrderReleaseApi.as_view(), name="order-release"),
    path("payment-orders/<str:payment_order_id>/refunds", money_out.RefundCreateApi.as_view(), name="refund-create"),
    path("refunds/<str:refund_id>", money_out.RefundDetailApi.as_view(), name="refund-detail"),
    path("sellers/<str:seller_account>", money_out.SellerSettingsApi.as_view(), name="seller-settings"),
    path("sellers/<str:seller_account>/payouts", money_out.SellerPayoutCreateApi.as_view(), name="payout-create"),
    path("payouts/<str:payout_id>", money_out.PayoutDetailApi.as_view(), name="payout-detail"),
]
