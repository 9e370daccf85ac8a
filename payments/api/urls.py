from __future__ import annotations

from django.urls import path

from payments.api import views

urlpatterns = [
    path("payments", views.PaymentCreateApi.as_view(), name="payment-create"),
    path("payments/<str:payment_id>", views.PaymentDetailApi.as_view(), name="payment-detail"),
    path("payment-orders/<str:payment_order_id>", views.PaymentOrderDetailApi.as_view(), name="payment-order-detail"),
    path("sellers/<str:seller_account>/balance", views.SellerBalanceApi.as_view(), name="seller-balance"),
]
