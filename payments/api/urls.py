from __future__ import annotations

from django.urls import path

from payments.api import views, webhooks

urlpatterns = [
    path("payments", views.PaymentCreateApi.as_view(), name="payment-create"),
    path("checkouts", views.CheckoutCreateApi.as_view(), name="checkout-create"),
    path("payments/<str:payment_id>", views.PaymentDetailApi.as_view(), name="payment-detail"),
    path("payment-orders/<str:payment_order_id>", views.PaymentOrderDetailApi.as_view(), name="payment-order-detail"),
    path("webhooks/stripe", webhooks.stripe_webhook, name="webhook-stripe"),
    path("sellers/<str:seller_account>/balance", views.SellerBalanceApi.as_view(), name="seller-balance"),
]
